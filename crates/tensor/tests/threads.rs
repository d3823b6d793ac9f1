//! Where `on_worker` and `with_threads` run their closures.

use convnet_tensor::{Tensor, on_worker, with_threads};

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
