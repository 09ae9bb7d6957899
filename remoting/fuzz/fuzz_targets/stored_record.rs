//! Feeds arbitrary bytes to the stored-record and batch decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = common::record::scan(data, true);
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = common::record::decode_all(&bytes, true);
    let _ = common::batch::decode(&bytes);
});
