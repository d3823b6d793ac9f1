//! The real pretrained `tf_efficientnet_lite0` checkpoint (fixtures/pretrained): its logits on
//! timm's preprocessed tensors (1e-4 relative), our eval transform against timm's tensors,
//! and the top-5 classes of the two photos from `expected.json`, in order. Needs `CONVNET_SHARED`.

use convnet_tensor::Tensor;
use convnet_zoo::npy::{nchw_to_nhwc, read_npy};
use convnet_zoo::transforms::EvalTransform;
use convnet_zoo::{Model, ZooOpts, create_model};
use std::path::PathBuf;

fn pretrained_dir() -> Option<PathBuf> {
    match std::env::var_os("CONVNET_SHARED") {
        Some(s) => Some(PathBuf::from(s).join("fixtures/pretrained")),
        None => {
            eprintln!("CONVNET_SHARED is not set: skipping the pretrained tf_efficientnet_lite0 checks");
            None
        }
    }
}

fn model(dir: &std::path::Path) -> Model {
    create_model("tf_efficientnet_lite0", ZooOpts::new().with_pretrained(dir.join("tf_efficientnet_lite0.safetensors")))
        .expect("the checkpoint loads strictly")
}

fn nchw_input(path: PathBuf) -> Tensor {
    let a = read_npy(path).unwrap();
    let [n, c, h, w] = a.shape[..] else { panic!("input is not NCHW: {:?}", a.shape) };
    Tensor::from_vec(nchw_to_nhwc(&a.data, [n, c, h, w]), [n, h, w, c]).unwrap()
}

#[test]
fn pretrained_logits_match_timm() {
    let Some(dir) = pretrained_dir() else { return };
    let m = model(&dir);
    for name in ["chelsea", "coffee"] {
        let y = m.forward(&nchw_input(dir.join(format!("{name}.input.npy")))).unwrap();
        let r = read_npy(dir.join(format!("{name}.logits.npy"))).unwrap();
        assert_eq!(y.numel(), r.data.len());
        let scale = r.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = y.data().iter().zip(&r.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{name}: max |ours - timm| = {err:.3e}, scale {scale:.3}, relative {:.3e}", err / scale);
        assert!(err <= 1e-4 * scale, "{name}: relative error {:.3e} > 1e-4", err / scale);
    }
}

#[test]
fn eval_transform_matches_timm_tensors() {
    let Some(dir) = pretrained_dir() else { return };
    let t = EvalTransform::from_cfg(model(&dir).pretrained_cfg());
    for name in ["chelsea", "coffee"] {
        let ours = t.load(dir.join(format!("{name}.png"))).unwrap();
        let theirs = nchw_input(dir.join(format!("{name}.input.npy")));
        assert_eq!(ours.dims(), theirs.dims());
        let diff = ours.data().iter().zip(theirs.data()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let off = ours.data().iter().zip(theirs.data()).filter(|(a, b)| (*a - *b).abs() > 1e-6).count();
        eprintln!("{name}: max |ours - timm| = {diff:.3e}, {off} of {} values differ", ours.numel());
        // one 8-bit step is 2/255 after normalisation with std 0.5
        assert!(diff < 1e-5, "{name}: preprocessing differs from timm's by {diff}");
    }
}

#[test]
fn photos_give_expected_top5() {
    let Some(dir) = pretrained_dir() else { return };
    let m = model(&dir);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let t = EvalTransform::from_cfg(m.pretrained_cfg());
    for name in ["chelsea", "coffee"] {
        let probs = m.forward(&t.load(dir.join(format!("{name}.png"))).unwrap()).unwrap().softmax().unwrap();
        let mut idx: Vec<usize> = (0..probs.numel()).collect();
        idx.sort_by(|&a, &b| probs.data()[b].total_cmp(&probs.data()[a]));
        let want: Vec<usize> = expected["images"][name]["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(idx[..5], want[..], "{name}");
        let p0 = expected["images"][name]["top5"][0]["prob"].as_f64().unwrap();
        assert!((probs.data()[idx[0]] as f64 - p0).abs() < 1e-3, "{name}: top-1 probability {}", probs.data()[idx[0]]);
    }
}
