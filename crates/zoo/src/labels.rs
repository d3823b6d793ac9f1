//! ImageNet-1k class labels, in timm's class-index order (vendored from
//! `shared/data/imagenet_classes.tsv` into the repository's `data/`).

/// The vendored TSV: `index<TAB>synset<TAB>label`, a header line, 1000 rows.
pub const IMAGENET_CLASSES_TSV: &str = include_str!("../../../data/imagenet_classes.tsv");

/// One ImageNet class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageNetClass {
    /// WordNet synset id (`n02123159`).
    pub synset: &'static str,
    /// Human-readable label (`tiger cat`).
    pub label: &'static str,
}

/// The 1000 ImageNet-1k classes, indexed by class id.
pub fn imagenet_classes() -> Vec<ImageNetClass> {
    IMAGENET_CLASSES_TSV
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let _index = f.next()?;
            Some(ImageNetClass { synset: f.next()?, label: f.next()? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousand_classes_in_order() {
        let c = super::imagenet_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[282].label, "tiger cat");
        assert_eq!(c[967].label, "espresso");
        assert_eq!(c[0].synset, "n01440764");
    }
}
