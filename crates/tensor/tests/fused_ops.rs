//! The fused ops (`conv2d_act`, `conv2d_add_act`, `linear_act`) against their
//! unfused compositions (`conv2d` then `relu`, then `add` too, `linear` then
//! `relu`): the same values
//! and the same gradients for every input, on odd shapes with and without
//! the AVX-512 direct-convolution path's sizes.

use convnet_tensor::rng::Rng;
use convnet_tensor::{Activation, Conv2dArgs, Padding2d, Tensor};

fn random(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal()).collect(), dims).unwrap().var()
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let scale = b.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.data().iter().zip(b.data()).enumerate() {
        assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
    }
}

/// Checks values and the gradients of `inputs` for `sum(seed * f(inputs))`.
fn check(inputs: &[Tensor], fused: impl Fn(&[Tensor]) -> Tensor, plain: impl Fn(&[Tensor]) -> Tensor, what: &str) {
    let (yf, yp) = (fused(inputs), plain(inputs));
    assert_close(&yf, &yp, &format!("{what} forward"));
    assert!(yf.data().contains(&0.0) && yf.data().iter().any(|v| *v > 0.0), "{what}: relu must be active somewhere");
    let mut rng = Rng::new(11);
    let seed = Tensor::from_vec((0..yf.numel()).map(|_| rng.normal()).collect(), yf.dims()).unwrap();
    let gf = yf.backward_with(seed.clone()).unwrap();
    let gp = yp.backward_with(seed).unwrap();
    for (i, t) in inputs.iter().enumerate() {
        assert_close(gf.get(t).unwrap(), gp.get(t).unwrap(), &format!("{what} grad {i}"));
    }
}

#[test]
fn conv2d_act_relu_equals_conv2d_then_relu() {
    let mut rng = Rng::new(3);
    let cases: [(&[usize], &[usize], Conv2dArgs); 4] = [
        // the MNIST CNN's layers (direct AVX-512 path where available)
        (&[3, 12, 12, 1], &[5, 5, 1, 32], Conv2dArgs { padding: Padding2d::Same, ..Default::default() }),
        (&[9, 7, 7, 32], &[5, 5, 32, 64], Conv2dArgs { padding: Padding2d::Same, ..Default::default() }),
        // ragged channels, dilation, asymmetric kernel
        (
            &[2, 9, 11, 19],
            &[3, 2, 19, 37],
            Conv2dArgs { padding: Padding2d::Same, dilation: (2, 1), ..Default::default() },
        ),
        // strided and grouped: the im2col path
        (&[2, 9, 8, 6], &[3, 3, 3, 10], Conv2dArgs { stride: (2, 2), groups: 2, ..Default::default() }),
    ];
    for (xd, wd, args) in cases {
        let inputs = [random(&mut rng, xd), random(&mut rng, wd), random(&mut rng, &[wd[3]])];
        check(
            &inputs,
            |t| t[0].conv2d_act(&t[1], Some(&t[2]), &args, Activation::Relu).unwrap(),
            |t| t[0].conv2d(&t[1], Some(&t[2]), &args).unwrap().relu(),
            &format!("conv {xd:?} {wd:?}"),
        );
    }
}

#[test]
fn conv2d_add_act_equals_conv2d_add_then_relu() {
    let mut rng = Rng::new(7);
    let same = Conv2dArgs { padding: Padding2d::Same, ..Default::default() };
    let cases: [(&[usize], &[usize], Conv2dArgs); 4] = [
        // 1x1 (im2col-free GEMM), plain and strided
        (&[2, 7, 9, 24], &[1, 1, 24, 40], Conv2dArgs::default()),
        (&[2, 8, 7, 16], &[1, 1, 16, 20], Conv2dArgs { stride: (2, 2), ..Default::default() }),
        // 3x3 with many input channels (implicit GEMM on AVX-512) and few (direct)
        (&[1, 6, 5, 64], &[3, 3, 64, 70], same),
        (&[3, 5, 6, 9], &[3, 3, 9, 17], same),
    ];
    for (xd, wd, args) in cases {
        let inputs = [random(&mut rng, xd), random(&mut rng, wd), random(&mut rng, &[wd[3]])];
        let out = inputs[0].conv2d(&inputs[1], None, &args).unwrap();
        let residual = random(&mut rng, out.dims());
        let what = format!("conv+add {xd:?} {wd:?}");
        // with gradients: the three ops recorded separately
        let all = [inputs[0].clone(), inputs[1].clone(), inputs[2].clone(), residual.clone()];
        check(
            &all,
            |t| t[0].conv2d_add_act(&t[1], Some(&t[2]), &args, &t[3], Activation::Relu).unwrap(),
            |t| t[0].conv2d(&t[1], Some(&t[2]), &args).unwrap().add(&t[3]).unwrap().relu(),
            &what,
        );
        // without: fused into the kernel's store
        let c: Vec<Tensor> = all.iter().map(|t| t.detach()).collect();
        for act in [Activation::Relu, Activation::Linear] {
            let fused = c[0].conv2d_add_act(&c[1], Some(&c[2]), &args, &c[3], act).unwrap();
            let plain = c[0].conv2d(&c[1], Some(&c[2]), &args).unwrap().add(&c[3]).unwrap().activation(act);
            assert!(!fused.requires_grad());
            assert_close(&fused, &plain, &format!("{what} {act:?} no grad"));
        }
        // a residual of another shape is an error, not a panic
        let bad = Tensor::zeros([1, 1, 1, 1]);
        assert!(c[0].conv2d_add_act(&c[1], Some(&c[2]), &args, &bad, Activation::Relu).is_err());
    }
}

#[test]
fn linear_act_relu_equals_linear_then_relu() {
    let mut rng = Rng::new(5);
    let inputs = [random(&mut rng, &[7, 33]), random(&mut rng, &[33, 13]), random(&mut rng, &[13])];
    check(
        &inputs,
        |t| t[0].linear_act(&t[1], Some(&t[2]), Activation::Relu).unwrap(),
        |t| t[0].linear(&t[1], Some(&t[2])).unwrap().relu(),
        "linear",
    );
}

#[test]
fn other_activations_fall_back_to_a_separate_op() {
    let mut rng = Rng::new(9);
    let (x, w) = (random(&mut rng, &[2, 5, 5, 3]), random(&mut rng, &[3, 3, 3, 4]));
    let args = Conv2dArgs::default();
    let fused = x.conv2d_act(&w, None, &args, Activation::Tanh).unwrap();
    let plain = x.conv2d(&w, None, &args).unwrap().tanh();
    assert_close(&fused, &plain, "tanh");
}

#[test]
fn conv2d_act_relu6_equals_conv2d_then_relu6_with_gradients() {
    let mut rng = Rng::new(13);
    let cases: [(&[usize], &[usize], Conv2dArgs); 2] = [
        // depthwise (its own kernel) and dense
        (
            &[2, 9, 8, 24],
            &[3, 3, 1, 24],
            Conv2dArgs { stride: (2, 2), padding: Padding2d::Same, groups: 24, ..Default::default() },
        ),
        (&[2, 7, 6, 5], &[3, 3, 5, 17], Conv2dArgs { padding: Padding2d::Same, ..Default::default() }),
    ];
    for (xd, wd, args) in cases {
        // scaled up so that both ends of relu6 are reached
        let inputs = [random(&mut rng, xd), random(&mut rng, wd).scale(3.0).detach().var(), random(&mut rng, &[wd[3]])];
        check(
            &inputs,
            |t| t[0].conv2d_act(&t[1], Some(&t[2]), &args, Activation::Relu6).unwrap(),
            |t| t[0].conv2d(&t[1], Some(&t[2]), &args).unwrap().relu6(),
            &format!("relu6 conv {xd:?} {wd:?}"),
        );
    }
}

#[test]
fn inference_silu_is_fused_and_equals_conv2d_then_silu() {
    let mut rng = Rng::new(15);
    let cases: [(&[usize], &[usize], Conv2dArgs); 3] = [
        (&[2, 11, 10, 40], &[5, 5, 1, 40], Conv2dArgs { padding: Padding2d::Same, groups: 40, ..Default::default() }),
        (
            &[1, 9, 9, 37],
            &[3, 3, 1, 37],
            Conv2dArgs { stride: (2, 2), padding: Padding2d::Same, groups: 37, ..Default::default() },
        ),
        (&[2, 6, 7, 8], &[1, 1, 8, 19], Conv2dArgs::default()),
    ];
    for (xd, wd, args) in cases {
        let (x, w, b) =
            (random(&mut rng, xd).detach(), random(&mut rng, wd).detach(), random(&mut rng, &[wd[3]]).detach());
        let fused = x.conv2d_act(&w, Some(&b), &args, Activation::Silu).unwrap();
        let plain = x.conv2d(&w, Some(&b), &args).unwrap().silu();
        assert_close(&fused, &plain, &format!("silu {xd:?} {wd:?}"));
        // with a gradient wanted it runs as a separate op, and the gradient flows
        let xv = x.var();
        let y = xv.conv2d_act(&w, Some(&b), &args, Activation::Silu).unwrap();
        assert_close(&y, &plain, "silu with autograd");
        assert!(y.sum().backward().unwrap().get(&xv).is_some());
    }
}

#[test]
fn conv2d_act_mean_equals_conv_then_global_average() {
    let mut rng = Rng::new(17);
    let cases: [(&[usize], &[usize], Conv2dArgs, Activation); 3] = [
        (
            &[3, 13, 12, 24],
            &[3, 3, 1, 24],
            Conv2dArgs { padding: Padding2d::Same, groups: 24, ..Default::default() },
            Activation::Silu,
        ),
        (
            &[2, 9, 9, 37],
            &[5, 5, 1, 37],
            Conv2dArgs { stride: (2, 2), padding: Padding2d::Same, groups: 37, ..Default::default() },
            Activation::Relu6,
        ),
        // not depthwise: the composition
        (&[2, 6, 7, 8], &[3, 3, 8, 5], Conv2dArgs { padding: Padding2d::Same, ..Default::default() }, Activation::Silu),
    ];
    for (xd, wd, args, act) in cases {
        let (x, w, b) =
            (random(&mut rng, xd).detach(), random(&mut rng, wd).detach(), random(&mut rng, &[wd[3]]).detach());
        let (y, m) = x.conv2d_act_mean(&w, Some(&b), &args, act).unwrap();
        let plain = x.conv2d_act(&w, Some(&b), &args, act).unwrap();
        assert_eq!(y.data(), plain.data(), "{xd:?}: the output itself is the plain kernel's");
        assert_eq!(m.dims(), [xd[0], wd[3]]);
        assert_close(&m, &plain.global_avg_pool().unwrap(), &format!("mean {xd:?}"));
        // with autograd: the composition, differentiable through the mean
        let xv = x.var();
        let (_, mv) = xv.conv2d_act_mean(&w, Some(&b), &args, act).unwrap();
        assert_close(&mv, &m, "mean with autograd");
        assert!(mv.sum().backward().unwrap().get(&xv).is_some());
    }
}
