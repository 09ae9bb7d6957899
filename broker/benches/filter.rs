//! Per-message cost of the pull-path filters: what every scanned message pays.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker::filter::{MessageFilter, SqlFilter, TagFilter};
use common::hash::tags_code;
use common::properties::Properties;
use common::subscription::SubscriptionData;
use criterion::{criterion_group, criterion_main, Criterion};

/// Counts allocations so the bench can assert the per-message path makes none.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// A typical stored properties string: system properties around a few user ones.
const PROPS: &str = "KEYS\u{1}order-42\u{2}a\u{1}17\u{2}region\u{1}us\u{2}TRACE_ON\u{1}true\u{2}\
     UNIQ_KEY\u{1}7F0000010B2C18B4AAC2437E9C870000\u{2}CLUSTER\u{1}DefaultCluster\u{2}\
     WAIT\u{1}true\u{2}TAGS\u{1}TagA";

const TYPICAL: &str = "a > 5 AND region IN ('eu','us') AND TAGS IS NOT NULL";

fn bench(c: &mut Criterion) {
    let filter = SqlFilter::compile(TYPICAL).unwrap();
    let encoded: &str = PROPS;
    assert!(filter.matches(encoded));
    let decoded = Properties::decode(PROPS);
    let sql_tag = MessageFilter::Sql(filter.clone());
    let allocs = allocations_during(|| {
        for _ in 0..100 {
            black_box(filter.matches(black_box(encoded)));
            black_box(filter.matches(black_box(&decoded)));
            black_box(sql_tag.pre_filter(black_box(7)) && sql_tag.matches_properties(black_box(encoded)));
        }
    });
    assert_eq!(allocs, 0, "per-message evaluation must not allocate");

    let mut g = c.benchmark_group("sql92");
    g.bench_function("typical/encoded", |b| b.iter(|| black_box(&filter).matches(black_box(encoded))));
    g.bench_function("typical/decoded", |b| b.iter(|| black_box(&filter).matches(black_box(&decoded))));
    let miss: &str = "KEYS\u{1}k\u{2}a\u{1}3\u{2}region\u{1}us\u{2}TAGS\u{1}TagA";
    g.bench_function("typical/short_circuit_miss", |b| b.iter(|| black_box(&filter).matches(black_box(miss))));
    let double = SqlFilter::compile("price BETWEEN 9.5 AND 20.25 OR vip = TRUE").unwrap();
    let priced: &str = "price\u{1}12.75\u{2}TAGS\u{1}TagA";
    g.bench_function("between_double/encoded", |b| b.iter(|| black_box(&double).matches(black_box(priced))));
    g.bench_function("compile/typical", |b| b.iter(|| SqlFilter::compile(black_box(TYPICAL)).unwrap()));
    g.finish();

    let mut g = c.benchmark_group("tag");
    let tags = MessageFilter::Tag(TagFilter::from_expression("TagA || TagB || TagC"));
    let code = tags_code(Some("TagA"));
    g.bench_function("pre_filter", |b| b.iter(|| black_box(&tags).pre_filter(black_box(code))));
    g.bench_function("matches_properties/encoded", |b| {
        b.iter(|| black_box(&tags).matches_properties(black_box(encoded)))
    });
    let sub = SubscriptionData::new("TopicTest", "TagA || TagB", "TAG", 1);
    g.bench_function("from_subscription", |b| b.iter(|| MessageFilter::from_subscription(black_box(&sub)).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
