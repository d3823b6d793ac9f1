//! The shape of the autograd graph: gradients of a value used twice add up,
//! deep chains neither overflow the stack in `backward` nor when dropped, and
//! only variables get gradients.

use convnet_tensor::Tensor;

fn approx(a: f32, b: f64, what: &str) {
    assert!((a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn diamond_graph_accumulates_gradients() {
    let xs = [-1.3f32, 0.4, 2.0];
    let x = Tensor::from_vec(xs.to_vec(), [3]).unwrap().var();
    // x feeds two branches that meet again: d/dx [sigmoid(x) * tanh(x)]
    let y = x.sigmoid().mul(&x.tanh()).unwrap().sum();
    let g = y.backward().unwrap();
    for (i, &v) in xs.iter().enumerate() {
        let v = v as f64;
        let (s, t) = (1.0 / (1.0 + (-v).exp()), v.tanh());
        approx(g.get(&x).unwrap().data()[i], s * (1.0 - s) * t + s * (1.0 - t * t), "diamond");
    }
    // x twice in one op: d/dx sum(x * x) = 2x, and d/dx sum(x + x + x) = 3
    let g = x.mul(&x).unwrap().sum().backward().unwrap();
    for (i, &v) in xs.iter().enumerate() {
        approx(g.get(&x).unwrap().data()[i], 2.0 * v as f64, "x * x");
    }
    let g = x.add(&x).unwrap().add(&x).unwrap().sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().data(), [3.0, 3.0, 3.0]);
    // a shared intermediate reached along paths of different lengths
    let h = x.scale(2.0);
    let z = h.add(&h.scale(3.0)).unwrap().add(&h.scale(3.0).scale(5.0)).unwrap().sum();
    // dz/dx = 2 * (1 + 3 + 15)
    assert_eq!(z.backward().unwrap().get(&x).unwrap().data(), [38.0, 38.0, 38.0]);
}

#[test]
fn deep_chain_does_not_overflow_the_stack() {
    // run on a thread with a small stack, so the test does not depend on the harness's
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let x = Tensor::from_vec(vec![0.5, -2.0], [2]).unwrap().var();
            let mut y = x.clone();
            for i in 0..10_000 {
                y = if i % 2 == 0 { y.add_scalar(0.25) } else { y.scale(1.0) };
            }
            assert_eq!(y.data(), [1250.5, 1248.0]);
            let loss = y.sum();
            let g = loss.backward().unwrap();
            assert_eq!(g.get(&x).unwrap().data(), [1.0, 1.0]);
            // dropping the 10,000-node graph must not recurse either
            drop(g);
            drop(loss);
            drop(y);
        })
        .unwrap()
        .join()
        .expect("a deep graph overflowed the stack");
}

#[test]
fn only_variables_receive_gradients() {
    let x = Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap().var();
    let w = Tensor::from_vec(vec![0.5, -1.0], [2]).unwrap().var();
    let c = Tensor::from_vec(vec![3.0, 4.0], [2]).unwrap();
    let hidden = x.mul(&w).unwrap();
    let out = hidden.add(&c).unwrap().relu();
    let loss = out.sum();
    let g = loss.backward().unwrap();
    assert_eq!(g.len(), 2, "exactly the two variables");
    assert_eq!(g.get(&x).unwrap().data(), [0.5, -1.0]);
    assert_eq!(g.get(&w).unwrap().data(), [1.0, 2.0]);
    for t in [&c, &hidden, &out, &loss] {
        assert!(g.get(t).is_none(), "{t:?} is not a variable");
    }
    // a detached branch contributes nothing
    let loss = x.mul(&w.detach()).unwrap().sum();
    let g = loss.backward().unwrap();
    assert_eq!(g.len(), 1);
    assert!(g.get(&w).is_none());
    // a variable unrelated to the loss gets nothing either
    let unrelated = Tensor::scalar(1.0).var();
    assert!(g.get(&unrelated).is_none());
    // take removes
    let mut g = x.sum().backward().unwrap();
    assert!(g.take(&x).is_some());
    assert!(g.is_empty());
}

#[test]
fn backward_twice_and_after_an_in_place_update() {
    let mut w = Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap().var();
    let loss = w.mul(&w).unwrap().sum();
    // the graph can be differentiated again
    let a = loss.backward().unwrap().get(&w).unwrap().to_vec();
    let b = loss.backward().unwrap().get(&w).unwrap().to_vec();
    assert_eq!(a, [2.0, 4.0]);
    assert_eq!(a, b);
    // an optimizer step writes a copy: the live graph keeps the old value
    w.data_mut()[0] = 10.0;
    assert_eq!(loss.backward().unwrap().get(&w).unwrap().data(), [2.0, 4.0]);
    let loss = w.mul(&w).unwrap().sum();
    assert_eq!(loss.backward().unwrap().get(&w).unwrap().data(), [20.0, 4.0]);
}
