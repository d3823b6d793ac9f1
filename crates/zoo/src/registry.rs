//! The registry: an explicit static table from timm model name to entry point and
//! pretrained configs, and `create_model("name[.tag]", opts)` on top of it (timm's
//! `_registry.py` and `_factory.py`).

use crate::error::{Result, ZooError};
use crate::model::{Model, ZooOpts};
use crate::pretrained::PretrainedCfg;
use crate::{alexnet, densenet, efficientnet as eff, googlenet, inception_resnet_v2, inception_v3, inception_v4};
use crate::{lenet, resnet, rexnet, vgg, xception};

/// One registered architecture.
pub struct ModelEntry {
    /// timm's name (`resnet50`).
    pub name: &'static str,
    /// The family file it lives in (`resnet`).
    pub family: &'static str,
    /// Builds it.
    pub build: fn(ZooOpts) -> Result<Model>,
    /// Pretrained configs, the default first.
    pub cfgs: &'static [PretrainedCfg],
    /// Trainable parameters with the default classifier (checked by a test against the built model).
    pub params: usize,
    /// Multiply-accumulates (billions) for one image at the default input size, convolutions
    /// and linear layers (timm's GMACs; checked against `timm_zoo.json`).
    pub gmacs: f64,
}

impl ModelEntry {
    /// The default pretrained config.
    pub fn default_cfg(&self) -> &'static PretrainedCfg {
        &self.cfgs[0]
    }
    /// `name.tag` of each config.
    pub fn tagged_names(&self) -> Vec<String> {
        self.cfgs.iter().map(|c| format!("{}.{}", self.name, c.tag)).collect()
    }
}

impl std::fmt::Debug for ModelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEntry").field("name", &self.name).field("family", &self.family).finish()
    }
}

macro_rules! entry {
    ($family:literal, $module:ident :: $name:ident, $cfgs:expr, $params:expr, $gmacs:expr) => {
        ModelEntry {
            name: stringify!($name),
            family: $family,
            build: $module::$name,
            cfgs: $cfgs,
            params: $params,
            gmacs: $gmacs,
        }
    };
}

/// Every registered model, grouped by family.
pub static MODELS: &[ModelEntry] = &[
    entry!("efficientnet", eff::efficientnet_b0, eff::EFFICIENTNET_B0, 5_288_548, 0.386),
    entry!("efficientnet", eff::efficientnet_b1, eff::EFFICIENTNET_B1, 7_794_184, 0.687),
    entry!("efficientnet", eff::efficientnet_b2, eff::EFFICIENTNET_B2, 9_109_994, 0.860),
    entry!("efficientnet", eff::efficientnet_b3, eff::EFFICIENTNET_B3, 12_233_232, 1.589),
    entry!("efficientnet", eff::efficientnet_b4, eff::EFFICIENTNET_B4, 19_341_616, 3.064),
    entry!("efficientnet", eff::efficientnet_b5, eff::EFFICIENTNET_B5, 30_389_784, 9.404),
    entry!("efficientnet", eff::efficientnet_b6, eff::EFFICIENTNET_B6, 43_040_704, 19.068),
    entry!("efficientnet", eff::efficientnet_b7, eff::EFFICIENTNET_B7, 66_347_960, 37.746),
    entry!("efficientnet", eff::tf_efficientnet_b0, eff::TF_EFFICIENTNET_B0, 5_288_548, 0.386),
    entry!("efficientnet", eff::tf_efficientnet_b1, eff::TF_EFFICIENTNET_B1, 7_794_184, 0.687),
    entry!("efficientnet", eff::tf_efficientnet_b2, eff::TF_EFFICIENTNET_B2, 9_109_994, 0.994),
    entry!("efficientnet", eff::tf_efficientnet_b3, eff::TF_EFFICIENTNET_B3, 12_233_232, 1.827),
    entry!("efficientnet", eff::tf_efficientnet_b4, eff::TF_EFFICIENTNET_B4, 19_341_616, 4.394),
    entry!("efficientnet", eff::tf_efficientnet_b5, eff::TF_EFFICIENTNET_B5, 30_389_784, 10.266),
    entry!("efficientnet", eff::tf_efficientnet_b6, eff::TF_EFFICIENTNET_B6, 43_040_704, 19.068),
    entry!("efficientnet", eff::tf_efficientnet_b7, eff::TF_EFFICIENTNET_B7, 66_347_960, 37.746),
    entry!("efficientnet", eff::efficientnet_lite0, eff::EFFICIENTNET_LITE0, 4_652_008, 0.385),
    entry!("efficientnet", eff::tf_efficientnet_lite0, eff::TF_EFFICIENTNET_LITE0, 4_652_008, 0.385),
    entry!("resnet", resnet::resnet18, resnet::RESNET18, 11_689_512, 1.814),
    entry!("resnet", resnet::resnet34, resnet::RESNET34, 21_797_672, 3.664),
    entry!("resnet", resnet::resnet50, resnet::RESNET50, 25_557_032, 4.089),
    entry!("resnet", resnet::resnet101, resnet::RESNET101, 44_549_160, 7.801),
    entry!("resnet", resnet::resnet152, resnet::RESNET152, 60_192_808, 11.514),
    entry!("resnet", resnet::resnext50_32x4d, resnet::RESNEXT50_32X4D, 25_028_904, 4.230),
    entry!("resnet", resnet::resnext101_32x4d, resnet::RESNEXT101_32X4D, 44_177_704, 7.970),
    entry!("resnet", resnet::resnext101_32x8d, resnet::RESNEXT101_32X8D, 88_791_336, 16.414),
    entry!("resnet", resnet::resnext101_64x4d, resnet::RESNEXT101_64X4D, 83_455_272, 15.460),
    entry!("rexnet", rexnet::rexnet_100, rexnet::REXNET_100, 4_796_873, 0.0),
    entry!("rexnet", rexnet::rexnet_130, rexnet::REXNET_130, 7_557_091, 0.0),
    entry!("rexnet", rexnet::rexnet_150, rexnet::REXNET_150, 9_728_593, 0.0),
    entry!("rexnet", rexnet::rexnet_200, rexnet::REXNET_200, 16_366_620, 0.0),
    entry!("rexnet", rexnet::rexnet_300, rexnet::REXNET_300, 34_708_792, 0.0),
    entry!("vgg", vgg::vgg11, vgg::VGG11, 132_863_336, 7.609),
    entry!("vgg", vgg::vgg11_bn, vgg::VGG11_BN, 132_868_840, 7.609),
    entry!("vgg", vgg::vgg13, vgg::VGG13, 133_047_848, 11.308),
    entry!("vgg", vgg::vgg13_bn, vgg::VGG13_BN, 133_053_736, 11.308),
    entry!("vgg", vgg::vgg16, vgg::VGG16, 138_357_544, 15.470),
    entry!("vgg", vgg::vgg16_bn, vgg::VGG16_BN, 138_365_992, 15.470),
    entry!("vgg", vgg::vgg19, vgg::VGG19, 143_667_240, 19.632),
    entry!("vgg", vgg::vgg19_bn, vgg::VGG19_BN, 143_678_248, 19.632),
    entry!("densenet", densenet::densenet121, densenet::DENSENET121, 7_978_856, 2.834),
    entry!("densenet", densenet::densenet161, densenet::DENSENET161, 28_681_000, 7.728),
    entry!("densenet", densenet::densenet169, densenet::DENSENET169, 14_149_480, 3.360),
    entry!("densenet", densenet::densenet201, densenet::DENSENET201, 20_013_928, 4.291),
    entry!("inception_v3", inception_v3::inception_v3, inception_v3::INCEPTION_V3, 23_834_568, 5.713),
    entry!("inception_v4", inception_v4::inception_v4, inception_v4::INCEPTION_V4, 42_679_816, 12.254),
    entry!(
        "inception_resnet_v2",
        inception_resnet_v2::inception_resnet_v2,
        inception_resnet_v2::INCEPTION_RESNET_V2,
        55_843_464,
        13.156
    ),
    entry!("xception", xception::legacy_xception, xception::LEGACY_XCEPTION, 22_855_952, 8.357),
    entry!("googlenet", googlenet::googlenet, googlenet::GOOGLENET, 6_624_904, 1.498),
    entry!("alexnet", alexnet::alexnet, alexnet::ALEXNET, 61_100_840, 0.714),
    entry!("lenet", lenet::lenet5, lenet::LENET5, 61_706, 0.000417),
];

/// The entry of `arch` (no tag).
pub fn entry(arch: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|e| e.name == arch)
}

/// Splits `resnet50.a1_in1k` into `("resnet50", Some("a1_in1k"))`.
pub fn split_model_name(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((a, t)) if !t.is_empty() => (a, Some(t)),
        Some((a, _)) => (a, None),
        None => (name, None),
    }
}

/// The pretrained config of `arch` with `tag` (default: the first).
pub fn pretrained_cfg(arch: &str, tag: Option<&str>) -> Result<PretrainedCfg> {
    let e = entry(arch).ok_or_else(|| unknown(arch))?;
    match tag {
        None => Ok(e.default_cfg().clone()),
        Some(t) => e.cfgs.iter().find(|c| c.tag == t).cloned().ok_or_else(|| ZooError::UnknownTag {
            arch: arch.to_string(),
            tag: t.to_string(),
            known: e.cfgs.iter().map(|c| c.tag.to_string()).collect(),
        }),
    }
}

/// timm's `create_model`: `name` is `arch` or `arch.tag`; a tag in `opts` is overridden by
/// one in the name.
pub fn create_model(name: &str, mut opts: ZooOpts) -> Result<Model> {
    let (arch, tag) = split_model_name(name.trim());
    let e = entry(arch).ok_or_else(|| unknown(arch))?;
    if let Some(t) = tag {
        opts.tag = Some(t.to_string());
    }
    (e.build)(opts)
}

/// Registered names matching a shell-style pattern (`*` any run, `?` one character;
/// a pattern without wildcards matches as a substring), in table order.
pub fn list_models(pattern: &str) -> Vec<&'static ModelEntry> {
    let p = pattern.trim();
    MODELS
        .iter()
        .filter(|e| {
            if p.is_empty() {
                true
            } else if p.contains(['*', '?']) {
                wildcard(p.as_bytes(), e.name.as_bytes())
            } else {
                e.name.contains(p)
            }
        })
        .collect()
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

fn unknown(name: &str) -> ZooError {
    ZooError::UnknownModel { name: name.to_string(), suggestions: suggestions(name) }
}

/// Registered names closest to `name` (edit distance, then shared prefix), at most five.
pub fn suggestions(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = MODELS.iter().map(|e| (levenshtein(&lower, e.name), e.name)).collect();
    scored.sort();
    let limit = (lower.len() / 2).max(3);
    let mut out: Vec<String> = scored.iter().filter(|(d, _)| *d <= limit).take(5).map(|(_, n)| n.to_string()).collect();
    if out.is_empty() {
        out = MODELS
            .iter()
            .filter(|e| e.name.contains(&lower) || lower.contains(e.name))
            .take(5)
            .map(|e| e.name.to_string())
            .collect();
    }
    out
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_match() {
        assert_eq!(split_model_name("resnet50.a1_in1k"), ("resnet50", Some("a1_in1k")));
        assert_eq!(split_model_name("resnet50"), ("resnet50", None));
        let r: Vec<&str> = list_models("resnet*").iter().map(|e| e.name).collect();
        assert_eq!(r, ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]);
        assert!(list_models("vgg1?_bn").iter().all(|e| e.name.ends_with("_bn")));
        assert_eq!(list_models("lite0").len(), 2);
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let err = create_model("resnet5", ZooOpts::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("did you mean") && msg.contains("resnet50"), "{msg}");
        let err = create_model("resnet50.nope", ZooOpts::default()).unwrap_err();
        assert!(matches!(err, ZooError::UnknownTag { .. }), "{err}");
    }

    #[test]
    fn registered_names_are_unique_and_have_configs() {
        for (i, e) in MODELS.iter().enumerate() {
            assert!(!e.cfgs.is_empty(), "{}", e.name);
            assert!(MODELS[i + 1..].iter().all(|o| o.name != e.name), "{} twice", e.name);
        }
    }
}
