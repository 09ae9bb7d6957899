//! The read path allocates per call, never per message: a counting global allocator
//! shows that a 32-message pull costs exactly as many allocations as a 1-message one,
//! and that the returned records are slices of the mapping, not copies.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use store::{FlushDiskType, GetRequest, GetStatus};
use support::*;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn pulls_allocate_per_call_not_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 1 << 20, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    for i in 0..64 {
        rt.block_on(store.put(msg("Alloc", 0, &[i as u8; 1024])));
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    // Warm up lazily initialised state.
    for _ in 0..3 {
        store.get_messages(&GetRequest::new("Alloc", 0, 0, 32));
    }

    let before = allocs();
    let one = store.get_messages(&GetRequest::new("Alloc", 0, 0, 1));
    let for_one = allocs() - before;
    assert_eq!((one.status, one.messages.len()), (GetStatus::Found, 1));

    let before = allocs();
    let many = store.get_messages(&GetRequest::new("Alloc", 0, 0, 32));
    let for_many = allocs() - before;
    assert_eq!((many.status, many.messages.len()), (GetStatus::Found, 32));
    assert_eq!(for_many, for_one, "allocations must not grow with the number of messages");
    assert!(for_many <= 2, "two result vectors at most, got {for_many}");

    // Zero copy: consecutive records are adjacent slices of the same mapping.
    for w in many.messages.windows(2) {
        assert_eq!(w[0].as_ptr() as usize + w[0].len(), w[1].as_ptr() as usize);
    }
    let before = allocs();
    drop(many);
    assert_eq!(allocs() - before, 0);
}
