//! Bad input gives a typed error, never a panic: impossible geometry is
//! `InvalidArgument`, operands that do not fit are `ShapeMismatch`,
//! differentiating a constant is `NoGradient`. Empty (zero-sized) inputs
//! that make sense give empty outputs.

use convnet_tensor::rng::Rng;
use convnet_tensor::{Conv2dArgs, Padding2d, Pool2dArgs, Result, Tensor, TensorError};

fn t(dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|i| (i % 7) as f32 * 0.1).collect(), dims.to_vec()).unwrap()
}

#[track_caller]
fn invalid(r: Result<Tensor>, what: &str) {
    match r {
        Err(e @ TensorError::InvalidArgument { .. }) => assert!(!e.to_string().is_empty()),
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

#[track_caller]
fn mismatch(r: Result<Tensor>, what: &str) {
    match r {
        Err(e @ TensorError::ShapeMismatch { .. }) => assert!(!e.to_string().is_empty()),
        other => panic!("{what}: expected ShapeMismatch, got {other:?}"),
    }
}

fn conv(x: &[usize], w: &[usize], args: Conv2dArgs) -> Result<Tensor> {
    t(x).conv2d(&t(w), None, &args)
}

#[test]
fn conv2d_errors() {
    let d = Conv2dArgs::default();
    invalid(conv(&[1, 3, 3, 2], &[5, 5, 2, 4], d), "kernel larger than the input");
    invalid(conv(&[1, 3, 6, 2], &[4, 1, 2, 4], d), "kernel taller than the input");
    invalid(
        conv(&[1, 5, 5, 1], &[3, 3, 1, 1], Conv2dArgs { dilation: (3, 1), ..d }),
        "dilated kernel larger than the input",
    );
    // "same" padding always fits
    assert_eq!(
        conv(&[1, 3, 3, 2], &[5, 5, 2, 4], Conv2dArgs { padding: Padding2d::Same, ..d }).unwrap().dims(),
        [1, 3, 3, 4]
    );
    invalid(
        conv(&[1, 5, 5, 4], &[3, 3, 1, 6], Conv2dArgs { groups: 3, ..d }),
        "groups not dividing the input channels",
    );
    invalid(conv(&[1, 5, 5, 4], &[3, 3, 2, 3], Conv2dArgs { groups: 2, ..d }), "groups not dividing the filters");
    invalid(conv(&[1, 5, 5, 4], &[3, 3, 4, 4], Conv2dArgs { groups: 0, ..d }), "zero groups");
    invalid(conv(&[1, 5, 5, 4], &[3, 3, 4, 4], Conv2dArgs { stride: (0, 1), ..d }), "zero stride");
    invalid(conv(&[1, 5, 5, 4], &[3, 3, 4, 4], Conv2dArgs { dilation: (1, 0), ..d }), "zero dilation");
    invalid(conv(&[1, 5, 5, 4], &[0, 3, 4, 4], d), "empty kernel");
    mismatch(conv(&[1, 5, 5, 4], &[3, 3, 3, 8], d), "weight for 3 input channels, input has 4");
    mismatch(
        conv(&[1, 5, 5, 4], &[3, 3, 4, 8], Conv2dArgs { groups: 2, ..d }),
        "grouped weight must hold in/groups channels",
    );
    mismatch(conv(&[5, 5, 4], &[3, 3, 4, 8], d), "input not NHWC");
    mismatch(conv(&[1, 5, 5, 4], &[3, 3, 32], d), "weight not HWIO");
    mismatch(t(&[1, 5, 5, 4]).conv2d(&t(&[3, 3, 4, 8]), Some(&t(&[4])), &d), "bias length");
    mismatch(t(&[1, 5, 5, 4]).conv2d(&t(&[3, 3, 4, 8]), Some(&t(&[1, 8])), &d), "bias rank");
    let big = Conv2dArgs { padding: Padding2d::Explicit { top: 0, bottom: 0, left: 0, right: 0 }, ..d };
    invalid(big.output_hw((2, 2), (3, 3)).map(|_| t(&[1])), "output_hw of an impossible geometry");
}

#[test]
fn pooling_errors() {
    let p = |k: usize, s: usize| Pool2dArgs {
        kernel: (k, k),
        stride: (s, s),
        padding: Padding2d::Valid,
        ceil_mode: false,
        count_include_pad: true,
    };
    let x = t(&[1, 3, 3, 2]);
    invalid(x.max_pool2d(&p(4, 1)), "max window larger than the input");
    invalid(x.avg_pool2d(&p(4, 1)), "avg window larger than the input");
    invalid(x.max_pool2d(&p(2, 0)), "zero stride");
    invalid(x.avg_pool2d(&p(0, 1)), "zero window");
    invalid(
        x.max_pool2d(&Pool2dArgs { padding: Padding2d::symmetric(2, 0), ..p(3, 1) }),
        "padding over half the window",
    );
    let bottom = Padding2d::Explicit { top: 0, bottom: 2, left: 0, right: 0 };
    invalid(x.avg_pool2d(&Pool2dArgs { padding: bottom, ..p(3, 1) }), "bottom padding over half the window");
    let right = Padding2d::Explicit { top: 0, bottom: 0, left: 1, right: 2 };
    invalid(x.max_pool2d(&Pool2dArgs { padding: right, ..p(3, 1) }), "right padding over half the window");
    mismatch(t(&[3, 3, 2]).max_pool2d(&p(2, 2)), "input not NHWC");
    mismatch(t(&[3, 3, 2]).avg_pool2d(&p(2, 2)), "input not NHWC");
    mismatch(t(&[3, 2]).global_avg_pool(), "global pool of a matrix");
    mismatch(t(&[3, 2]).global_max_pool(), "global pool of a matrix");
    mismatch(t(&[1, 0, 3, 2]).global_avg_pool(), "global pool of an empty image");
    mismatch(t(&[1, 3, 0, 2]).global_max_pool(), "global pool of an empty image");
}

#[test]
fn matmul_binary_concat_reshape_reduce_errors() {
    mismatch(t(&[3, 4]).matmul(&t(&[5, 2])), "inner sizes");
    mismatch(t(&[2, 3, 4]).matmul(&t(&[4, 2])), "batched matmul");
    mismatch(t(&[3, 4]).linear(&t(&[4, 2]), Some(&t(&[3]))), "linear bias");
    mismatch(t(&[2, 3]).add(&t(&[4])), "add");
    mismatch(t(&[2, 3]).sub(&t(&[2, 1, 2])), "sub");
    mismatch(t(&[2, 3]).mul(&t(&[3, 2])), "mul");
    mismatch(t(&[2, 3]).div(&t(&[2])), "div");
    invalid(Tensor::concat(&[], 0), "concat of nothing");
    invalid(Tensor::concat(&[&t(&[2, 3]), &t(&[2, 3])], 2), "concat axis out of range");
    mismatch(Tensor::concat(&[&t(&[2, 3]), &t(&[3, 3])], 1), "concat sizes off the axis");
    mismatch(Tensor::concat(&[&t(&[2, 3]), &t(&[2, 3, 1])], 1), "concat ranks");
    mismatch(t(&[2, 3]).reshape([4, 2]), "reshape count");
    mismatch(t(&[2, 3]).reshape([4, usize::MAX]), "reshape cannot infer");
    invalid(t(&[2, 3]).reshape([usize::MAX, usize::MAX]), "reshape two inferred");
    mismatch(Tensor::scalar(1.0).flatten(), "flatten a scalar");
    invalid(t(&[2, 3]).sum_axes(&[2], false), "sum axis out of range");
    invalid(t(&[2, 3]).mean_axes(&[0, 5], true), "mean axis out of range");
    invalid(t(&[2, 3]).mean_axes(&[1, 1], false), "an axis twice");
    mismatch(t(&[2, 0]).softmax(), "softmax of an empty axis");
    mismatch(Tensor::scalar(1.0).log_softmax(), "log_softmax of a scalar");
    mismatch(Tensor::from_vec(vec![1.0; 5], [2, 3]), "from_vec count");
    assert!(matches!(t(&[2]).item(), Err(TensorError::ShapeMismatch { .. })));
}

#[test]
fn batch_norm_and_dropout_errors() {
    let x = t(&[2, 3, 3, 4]);
    let (g, b) = (t(&[4]), t(&[4]));
    mismatch(x.batch_norm_train(&t(&[3]), &b, 1e-3).map(|r| r.0), "gamma length");
    mismatch(x.batch_norm_train(&g, &t(&[4, 1]), 1e-3).map(|r| r.0), "beta rank");
    mismatch(x.batch_norm_infer(&g, &b, &[0.0; 3], &[1.0; 4], 1e-3), "running mean length");
    mismatch(x.batch_norm_infer(&g, &b, &[0.0; 4], &[1.0; 5], 1e-3), "running var length");
    invalid(t(&[0, 4]).batch_norm_train(&g, &b, 1e-3).map(|r| r.0), "empty batch");
    for rate in [1.0, 1.5, -0.1, f32::NAN] {
        invalid(x.dropout(rate, &mut Rng::new(0)), "dropout rate");
    }
}

#[test]
fn loss_errors() {
    let logits = t(&[3, 4]);
    let err = logits.softmax_cross_entropy_sparse(&[0, 4, 1]).unwrap_err();
    assert!(matches!(err, TensorError::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("label 4"), "the message names the label: {err}");
    invalid(logits.probs_cross_entropy_sparse(&[0, 1, 9]), "probs label out of range");
    mismatch(logits.softmax_cross_entropy_sparse(&[0, 1]), "label count");
    mismatch(logits.probs_cross_entropy_sparse(&[0, 1, 2, 3]), "label count");
    mismatch(logits.softmax_cross_entropy(&t(&[3, 5])), "dense targets shape");
    mismatch(logits.probs_cross_entropy(&t(&[4, 3])), "dense targets shape");
    mismatch(t(&[12]).softmax_cross_entropy_sparse(&[0]), "logits not a matrix");
    mismatch(t(&[3, 0]).softmax_cross_entropy_sparse(&[0, 0, 0]), "no classes");
    mismatch(logits.sigmoid_binary_cross_entropy(&t(&[4, 3])), "binary targets shape");
    mismatch(logits.probs_binary_cross_entropy(&t(&[12])), "binary targets shape");
}

#[test]
fn backward_errors() {
    let c = t(&[2, 2]);
    assert!(matches!(c.sum().backward(), Err(TensorError::NoGradient)), "a constant has no gradient");
    assert!(matches!(c.relu().mean().backward(), Err(TensorError::NoGradient)));
    assert!(matches!(c.var().detach().sum().backward(), Err(TensorError::NoGradient)));
    let v = c.var().relu();
    assert!(matches!(v.backward_with(t(&[4])), Err(TensorError::ShapeMismatch { .. })), "seed of the wrong shape");
}

#[test]
fn empty_tensors_give_empty_results() {
    // an empty batch flows through every layer type and back
    let x = t(&[0, 5, 5, 3]).var();
    let w = t(&[3, 3, 3, 4]).var();
    let y = x.conv2d(&w, Some(&t(&[4])), &Conv2dArgs::default()).unwrap();
    assert_eq!(y.dims(), [0, 3, 3, 4]);
    let y = y.max_pool2d(&Pool2dArgs::square(2)).unwrap().avg_pool2d(&Pool2dArgs::square(1)).unwrap();
    assert_eq!(y.dims(), [0, 1, 1, 4]);
    let y = y.global_avg_pool().unwrap().linear(&t(&[4, 2]), None).unwrap();
    assert_eq!(y.dims(), [0, 2]);
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().dims(), [0, 5, 5, 3]);
    assert_eq!(g.get(&w).unwrap().data(), [0.0; 108]);
    // as in PyTorch, only the batch axis may be empty for images
    let p = Pool2dArgs::square(2);
    mismatch(t(&[1, 4, 4, 0]).max_pool2d(&p), "max pool of zero channels");
    mismatch(t(&[1, 4, 4, 0]).var().avg_pool2d(&p), "avg pool of zero channels");
    mismatch(
        t(&[1, 0, 3, 2]).max_pool2d(&Pool2dArgs { padding: Padding2d::symmetric(1, 0), ..p }),
        "pool of an empty image",
    );
    mismatch(t(&[1, 0, 3, 2]).avg_pool2d(&Pool2dArgs { padding: Padding2d::Same, ..p }), "pool of an empty image");
    mismatch(t(&[1, 4, 4, 0]).conv2d(&t(&[3, 3, 0, 2]), None, &Conv2dArgs::default()), "conv of zero channels");
    mismatch(
        t(&[1, 4, 0, 2]).conv2d(
            &t(&[1, 1, 2, 2]),
            None,
            &Conv2dArgs { padding: Padding2d::Same, ..Conv2dArgs::default() },
        ),
        "conv of an empty image",
    );
    mismatch(t(&[2, 3, 3, 0]).global_avg_pool(), "global pool of zero channels");
    mismatch(t(&[2, 3, 3, 0]).global_max_pool(), "global pool of zero channels");
    // zero filters is a valid, empty result
    let x = t(&[1, 4, 4, 2]).var();
    let y = x.conv2d(&t(&[3, 3, 2, 0]), None, &Conv2dArgs::default()).unwrap();
    assert_eq!(y.dims(), [1, 2, 2, 0]);
    assert_eq!(y.sum().backward().unwrap().get(&x).unwrap().data(), [0.0; 32]);
    // empty matrices
    assert_eq!(t(&[0, 3]).matmul(&t(&[3, 2])).unwrap().dims(), [0, 2]);
    assert_eq!(t(&[2, 0]).matmul(&t(&[0, 3])).unwrap().data(), [0.0; 6]);
    assert_eq!(t(&[0, 3]).softmax_cross_entropy_sparse(&[]).unwrap().item().unwrap(), 0.0);
    // zero outputs, with a bias
    let (x, b) = (t(&[2, 3]).var(), t(&[0]).var());
    let y = x.linear(&t(&[3, 0]), Some(&b)).unwrap();
    assert_eq!(y.dims(), [2, 0]);
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().data(), [0.0; 6]);
    assert_eq!(g.get(&b).unwrap().numel(), 0);
}
