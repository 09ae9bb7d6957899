//! Feeds arbitrary bytes to the frame decoder: it must return frames, `None` or an
//! error, never panic; every decoded command must re-encode and decode to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use remoting::codec::{encode_to_bytes, RemotingCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = RemotingCodec.decode(&mut buf) {
        if let Ok(bytes) = encode_to_bytes(&cmd) {
            let mut again = BytesMut::from(&bytes[..]);
            let round = RemotingCodec.decode(&mut again).expect("re-decode").expect("whole frame");
            assert_eq!(round.code as i16, cmd.code as i16);
            assert_eq!(round.opaque, cmd.opaque);
            assert_eq!(round.ext_fields, cmd.ext_fields);
        }
    }
});
