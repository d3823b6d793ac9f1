//! Where `on_worker` and `with_threads` run their closures.

use convnet_tensor::{Tensor, on_worker, with_pool_awake, with_threads};

#[test]
fn on_worker_runs_on_a_pool_worker_and_returns_the_result() {
    // the test harness's threads are not rayon workers
    assert_eq!(rayon::current_thread_index(), None);
    let (index, sum) = on_worker(|| {
        let x = Tensor::from_vec((0..1000).map(|i| i as f32).collect(), [10, 100]).unwrap();
        (rayon::current_thread_index(), x.sum().data()[0])
    });
    assert!(index.is_some(), "the closure ran outside the pool");
    assert_eq!(sum, 499_500.0);
}

#[test]
fn on_worker_inside_a_pool_stays_on_the_calling_worker() {
    with_threads(2, || {
        let outer = std::thread::current().id();
        let (inner, threads) = on_worker(|| (std::thread::current().id(), rayon::current_num_threads()));
        assert_eq!(inner, outer);
        assert_eq!(threads, 2);
    });
}

#[test]
fn with_pool_awake_returns_and_lets_nested_parallel_work_finish() {
    use rayon::prelude::*;
    for threads in [1, 2, 3] {
        with_threads(threads, || {
            // many joins: the caller waits in them and may pick up its own helpers,
            // which must return at once rather than spin on top of `f`
            let sum = with_pool_awake(|| {
                (0..10_000u32).into_par_iter().with_max_len(16).map(|i| u64::from(i) * u64::from(i)).sum::<u64>()
            });
            assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>(), "{threads} threads");
            // nested, and twice in a row on the same pool
            let n = with_pool_awake(|| with_pool_awake(|| (0..1000).into_par_iter().filter(|i| i % 7 == 0).count()));
            assert_eq!(n, 143, "{threads} threads");
        });
    }
    // from outside any pool: the global one
    assert_eq!(with_pool_awake(|| 5), 5);
}
