//! Image folders, decoding, timm's transforms and the batch loader, on small PNG/JPEG files
//! written into temporary folders.

use convnet_data::*;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use std::path::{Path, PathBuf};

fn rgb(w: u32, h: u32, seed: u32) -> image::RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 40 + seed) as u8, (y * 30 + seed * 7) as u8, ((x + y) * 20) as u8]))
}

fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rgb(w, h, seed).save(path).unwrap();
}

fn write_jpeg(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rgb(w, h, seed).save_with_format(path, image::ImageFormat::Jpeg).unwrap();
}

fn touch(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn names(f: &ImageFolder) -> Vec<(String, usize)> {
    f.samples.iter().map(|(p, l)| (p.strip_prefix(&f.root).unwrap().display().to_string(), *l)).collect()
}

// ------------------------------------------------------------------ folders

#[test]
fn classes_and_files_are_sorted_and_non_images_hidden_files_skipped() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write_png(&r.join("b/2.png"), 4, 4, 1);
    write_png(&r.join("b/10.PNG"), 4, 4, 2);
    write_jpeg(&r.join("b/sub/0.jpeg"), 4, 4, 3);
    write_png(&r.join("b/.hidden.png"), 4, 4, 4);
    touch(&r.join("b/notes.txt"), b"hi");
    write_png(&r.join("a/x.Jpg"), 4, 4, 5); // PNG bytes, JPEG name: the decoder sniffs
    write_png(&r.join("C/y.png"), 4, 4, 6);
    write_png(&r.join(".ipynb_checkpoints/z.png"), 4, 4, 7);
    touch(&r.join("README.md"), b"not a class");
    let f = ImageFolder::open(r).unwrap();
    assert_eq!(f.classes, ["C", "a", "b"]);
    let want = [("C/y.png", 0), ("a/x.Jpg", 1), ("b/10.PNG", 2), ("b/2.png", 2), ("b/sub/0.jpeg", 2)];
    assert_eq!(names(&f), want.map(|(p, l)| (p.to_string(), l)));
    assert_eq!(f.class_counts(), [1, 1, 3]);
    assert_eq!((f.len(), f.num_classes()), (5, 3));
}

#[test]
fn folder_errors_name_the_path() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let err = ImageFolder::open(r.join("missing")).unwrap_err();
    assert!(matches!(&err, DataError::NotADirectory { path } if path.ends_with("missing")), "{err}");
    let err = ImageFolder::open(r).unwrap_err();
    assert!(matches!(err, DataError::NoClasses { .. }), "{err}");

    std::fs::create_dir_all(r.join("cat")).unwrap();
    std::fs::create_dir_all(r.join("dog")).unwrap();
    touch(&r.join("dog/readme.txt"), b"x");
    let err = ImageFolder::open(r).unwrap_err();
    assert!(matches!(err, DataError::NoImages { .. }), "{err}");

    write_png(&r.join("cat/1.png"), 2, 2, 0);
    let err = ImageFolder::open(r).unwrap_err();
    assert!(matches!(&err, DataError::EmptyClass { path } if path.ends_with("dog")), "{err}");
    assert!(err.to_string().contains("dog"), "{err}");

    std::fs::remove_dir_all(r.join("dog")).unwrap();
    let err = ImageFolder::open(r).unwrap_err();
    assert!(err.to_string().contains("needs at least 2 classes"), "{err}");
}

#[test]
fn train_val_folders_share_train_classes() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for c in ["ant", "bee", "cow"] {
        for i in 0..3 {
            write_png(&r.join(format!("train/{c}/{i}.png")), 3, 3, i);
        }
    }
    write_png(&r.join("val/cow/0.png"), 3, 3, 0);
    write_png(&r.join("val/ant/0.png"), 3, 3, 0);
    let (train, val) = ImageFolder::split(r).unwrap();
    assert_eq!(train.classes, val.classes);
    assert_eq!(names(&val), [("ant/0.png".to_string(), 0), ("cow/0.png".to_string(), 2)]);
    assert_eq!(train.len(), 9);

    write_png(&r.join("val/dog/0.png"), 3, 3, 0);
    let err = ImageFolder::split(r).unwrap_err();
    assert!(matches!(&err, DataError::UnknownClass { class, .. } if class == "dog"), "{err}");
}

#[test]
fn random_split_is_per_class_deterministic_and_disjoint() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for (c, n) in [("a", 10), ("b", 5), ("c", 1)] {
        for i in 0..n {
            write_png(&r.join(format!("{c}/{i:02}.png")), 2, 2, i);
        }
    }
    let (train, val) = ImageFolder::random_split(r, 0.2, 7).unwrap();
    // round(0.2 n) per class, keeping at least one training image
    assert_eq!(val.class_counts(), [2, 1, 0]);
    assert_eq!(train.class_counts(), [8, 4, 1]);
    assert_eq!(ImageFolder::random_split(r, 0.2, 7).unwrap(), (train.clone(), val.clone()));
    let mut all: Vec<_> = train.samples.iter().chain(&val.samples).cloned().collect();
    all.sort();
    let mut want = ImageFolder::open(r).unwrap().samples;
    want.sort();
    assert_eq!(all, want);
    let seeds_differ = (0..20).any(|s| ImageFolder::random_split(r, 0.2, s).unwrap().1 != val);
    assert!(seeds_differ);
    assert!(matches!(ImageFolder::random_split(r, 1.0, 0), Err(DataError::InvalidConfig { .. })));
}

// ------------------------------------------------------------------ decoding

#[test]
fn grey_alpha_and_16_bit_images_become_rgb() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    ImageBuffer::from_pixel(2, 1, Luma([100u8])).save(p("l.png")).unwrap();
    ImageBuffer::from_pixel(2, 1, LumaA([100u8, 7])).save(p("la.png")).unwrap();
    ImageBuffer::from_pixel(2, 1, Rgba([10u8, 20, 30, 0])).save(p("rgba.png")).unwrap();
    ImageBuffer::from_pixel(2, 1, Rgb([10u16 * 257, 20 * 257, 30 * 257])).save(p("rgb16.png")).unwrap();
    ImageBuffer::from_pixel(2, 1, Luma([100u16 * 257])).save(p("l16.png")).unwrap();
    ImageBuffer::from_pixel(2, 1, Luma([100u8])).save(p("l.jpg")).unwrap();
    for (name, px) in [
        ("l.png", [100, 100, 100]),
        ("la.png", [100; 3]),
        ("rgba.png", [10, 20, 30]),
        ("rgb16.png", [10, 20, 30]),
        ("l16.png", [100; 3]),
    ] {
        let img = load_image(p(name)).unwrap();
        assert_eq!((img.width, img.height, &img.data[..]), (2, 1, &[px, px].concat()[..]), "{name}");
    }
    let img = load_image(p("l.jpg")).unwrap();
    assert_eq!(img.data.len(), 6);
    assert!(img.data.iter().all(|&v| v.abs_diff(100) <= 2), "{:?}", img.data);
}

/// The `image` crate's encoder cannot write CMYK, so this is a hand-made 8x8 baseline JPEG with
/// four components (Adobe APP14, no transform), every coefficient zero: each channel decodes to
/// the level-shifted 128.
#[test]
fn cmyk_jpeg_becomes_rgb() {
    let mut b = vec![0xFF, 0xD8];
    b.extend([0xFF, 0xEE, 0x00, 0x0E]);
    b.extend(b"Adobe");
    b.extend([0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00]);
    b.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
    b.extend([1u8; 64]);
    b.extend([0xFF, 0xC0, 0x00, 0x14, 8, 0, 8, 0, 8, 4]);
    for c in 1..=4 {
        b.extend([c, 0x11, 0]);
    }
    for class in [0x00, 0x10] {
        b.extend([0xFF, 0xC4, 0x00, 0x14, class, 1]);
        b.extend([0u8; 15]);
        b.push(0x00); // one code, "0": DC category 0 / AC end-of-block
    }
    b.extend([0xFF, 0xDA, 0x00, 0x0E, 4]);
    for c in 1..=4 {
        b.extend([c, 0x00]);
    }
    b.extend([0, 63, 0]);
    b.push(0x00); // four blocks of "DC 0, EOB": eight zero bits
    b.extend([0xFF, 0xD9]);
    let img = decode_image(&b).unwrap();
    assert_eq!((img.width, img.height, img.data.len()), (8, 8, 8 * 8 * 3));
    let px = &img.data[..3];
    assert!(img.data.chunks(3).all(|p| p == px), "{px:?}");
    assert!(px[0] == px[1] && px[1] == px[2], "C = M = Y gives grey: {px:?}");
}

#[test]
fn truncated_and_garbage_files_are_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let jpg = d.path().join("t.jpg");
    write_jpeg(&jpg, 64, 64, 3);
    let bytes = std::fs::read(&jpg).unwrap();
    assert!(load_image(&jpg).is_ok());
    // the JPEG decoder alone accepts this and fills the rest with grey
    assert!(image::load_from_memory(&bytes[..bytes.len() * 2 / 3]).is_ok());
    std::fs::write(&jpg, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = load_image(&jpg).unwrap_err();
    assert!(matches!(err, DataError::TruncatedImage { .. }), "{err}");
    assert!(err.to_string().contains("t.jpg"), "{err}");

    let png = d.path().join("t.png");
    write_png(&png, 64, 64, 3);
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image(&png).unwrap_err();
    assert!(err.to_string().contains("t.png"), "{err}");

    let bad = d.path().join("bad.png");
    touch(&bad, b"not an image at all");
    let err = load_image(&bad).unwrap_err();
    assert!(matches!(err, DataError::BadImage { .. }) && err.to_string().contains("bad.png"), "{err}");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    // a 9000 x 9000 grey PNG compresses to a few kB but would decode to 81 megapixels
    let mut bytes = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(enc, &vec![0u8; 9000 * 9000], 9000, 9000, image::ExtendedColorType::L8).unwrap();
    assert!(bytes.len() < 1 << 20);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("bomb.png");
    std::fs::write(&path, bytes).unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, DataError::ImageTooLarge { width: 9000, height: 9000, .. }), "{err}");
}

/// The MNIST digit reader goes through the same guards: a bomb is refused from its header
/// and a truncated JPEG is an error, not a grey-filled digit.
#[test]
fn digit_images_are_guarded_too() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(enc, &vec![0u8; 9000 * 9000], 9000, 9000, image::ExtendedColorType::L8).unwrap();
    let bomb = d.path().join("bomb.png");
    std::fs::write(&bomb, bytes).unwrap();
    let err = load_digit_image(&bomb).unwrap_err();
    assert!(matches!(err, DataError::ImageTooLarge { .. }), "{err}");

    let jpg = d.path().join("digit.jpg");
    write_jpeg(&jpg, 64, 64, 5);
    assert_eq!(load_digit_image(&jpg).unwrap().len(), 28 * 28);
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_digit_image(&jpg).unwrap_err();
    assert!(matches!(err, DataError::TruncatedImage { .. }) && err.to_string().contains("digit.jpg"), "{err}");
}

/// A 60000 x 1 PNG is a few hundred bytes, but resizing its short side to the model's input
/// would make it 15 million pixels wide: refused before resizing, naming the file.
#[test]
fn extreme_aspect_ratios_are_refused_before_resizing() {
    let d = tempfile::tempdir().unwrap();
    let strip = d.path().join("strip.png");
    write_png(&strip, 60000, 1, 1);
    let t = EvalTransform::new(&DataConfig::default());
    let err = t.load(&strip).unwrap_err();
    assert!(matches!(err, DataError::ResizeTooLarge { width: 60000, height: 1, .. }), "{err}");
    assert!(err.to_string().contains("strip.png"), "{err}");
    // an ordinary panorama still passes
    let pano = d.path().join("pano.png");
    write_png(&pano, 400, 100, 2);
    assert_eq!(t.load(&pano).unwrap().shape, [224, 224, 3]);
}

// ------------------------------------------------------------------ transforms

#[test]
fn random_resized_crop_stays_in_documented_ranges() {
    let (scale, ratio) = ((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0));
    for (w, h) in [(640usize, 480usize), (100, 300), (37, 5), (1, 1), (2, 1)] {
        for seed in 0..300 {
            let b = random_resized_crop_params(w, h, scale, ratio, &mut SplitMix64::new(seed));
            assert!(b.width >= 1 && b.height >= 1, "{b:?}");
            assert!(b.left + b.width <= w && b.top + b.height <= h, "{w}x{h}: {b:?}");
            if (w, h) == (640, 480) {
                // rounding moves each side by at most half a pixel
                let area = (b.width * b.height) as f64 / (w * h) as f64;
                assert!((0.079..=1.0).contains(&area), "{area}");
                let r = b.width as f64 / b.height as f64;
                assert!((0.74..=1.345).contains(&r), "{r}");
            }
        }
    }
}

#[test]
fn random_resized_crop_equals_a_hand_computed_case() {
    // Worked by hand (in Python) from SplitMix64(42)'s stream, for a 640 x 480 image:
    // attempt 1: u = 0.741565, 0.159910: area = 307200 (0.08 + 0.92 u) = 234160.0,
    //   r = exp(ln 3/4 + ln(16/9) u) = 0.822279, w = round(sqrt(area r)) = 439,
    //   h = round(sqrt(area / r)) = 534 > 480: rejected;
    // attempt 2: u = 0.278601, 0.344191: area 103315.4, r 0.914254, w 307, h 336: accepted;
    // then top = randint(0, 480 - 336) = 15, left = randint(0, 640 - 307) = 274.
    let mut r = SplitMix64::new(42);
    let b = random_resized_crop_params(640, 480, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut r);
    assert_eq!(b, CropBox { top: HAND_TOP, left: HAND_LEFT, height: HAND_H, width: HAND_W });
    // no attempt fits (scale > 1): the central crop, ratio clamped to 4/3
    let b = random_resized_crop_params(100, 50, (2.0, 3.0), (3.0 / 4.0, 4.0 / 3.0), &mut r);
    assert_eq!(b, CropBox { top: 0, left: 16, height: 50, width: 67 });
    let b = random_resized_crop_params(10, 50, (2.0, 3.0), (3.0 / 4.0, 4.0 / 3.0), &mut r);
    assert_eq!(b, CropBox { top: 18, left: 0, height: 13, width: 10 });
}
const HAND_TOP: usize = 15;
const HAND_LEFT: usize = 274;
const HAND_H: usize = 336;
const HAND_W: usize = 307;

#[test]
fn flip_mirrors_the_same_crop() {
    let img = load_rgb(rgb(23, 17, 5));
    let mut t = TrainTransform::new(&DataConfig { input_size: [3, 8, 6], ..DataConfig::default() });
    t.hflip = 0.0;
    let plain = t.augment(&img, &mut SplitMix64::new(3));
    t.hflip = 1.0;
    let flipped = t.augment(&img, &mut SplitMix64::new(3));
    assert_eq!((plain.width, plain.height), (6, 8));
    assert_eq!(transforms::hflip(&plain), flipped);
    assert_ne!(plain, flipped);
    // with p = 0.5 about half the samples flip, each keeping its crop
    let flips = (0..400)
        .filter(|&seed| {
            let mut t = t.clone();
            t.hflip = 0.0;
            let plain = t.augment(&img, &mut SplitMix64::new(seed));
            t.hflip = 0.5;
            let out = t.augment(&img, &mut SplitMix64::new(seed));
            assert!(out == plain || out == transforms::hflip(&plain));
            out != plain
        })
        .count();
    assert!((160..240).contains(&flips), "{flips}");
}

fn load_rgb(i: image::RgbImage) -> Rgb8 {
    Rgb8 { width: i.width() as usize, height: i.height() as usize, data: i.into_raw() }
}

fn fnv(v: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.iter().flat_map(|x| x.to_bits().to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn golden_img(w: usize, h: usize) -> Rgb8 {
    Rgb8 { width: w, height: h, data: (0..w * h * 3).map(|i| ((i * 7919 + i / 5 * 13) % 256) as u8).collect() }
}

/// Hashes of `convnet_zoo::transforms::EvalTransform::apply` before the transform moved here
/// (commit 8a83acd): the moved code must give the same bits.
#[test]
fn eval_transform_is_bit_identical_to_zoos_before_the_move() {
    let mut got = Vec::new();
    for (w, h) in [(1usize, 1usize), (451, 300), (300, 451), (17, 9), (224, 224), (500, 375)] {
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Nearest] {
            for (size, crop) in
                [((224usize, 224usize), 0.875f64), ((299, 299), 0.8975), ((64, 48), 1.0), ((32, 32), 0.95)]
            {
                let t = EvalTransform {
                    size,
                    crop_pct: crop,
                    interpolation: interp,
                    mean: IMAGENET_MEAN,
                    std: IMAGENET_STD,
                };
                let y = t.apply(&golden_img(w, h));
                assert_eq!(y.shape, [size.0, size.1, 3]);
                got.push(fnv(&y.data));
            }
        }
    }
    assert_eq!(got, GOLDEN);
}
const GOLDEN: [u64; 72] = [
    0xfc65fe6f826e4b25,
    0x91ec9e02739c393c,
    0x9f5be58df3e81b25,
    0x582ae4b9560ecb25,
    0xfc65fe6f826e4b25,
    0x91ec9e02739c393c,
    0x9f5be58df3e81b25,
    0x582ae4b9560ecb25,
    0xfc65fe6f826e4b25,
    0x91ec9e02739c393c,
    0x9f5be58df3e81b25,
    0x582ae4b9560ecb25,
    0x177404bc46c9db76,
    0xd2ac1269d77eb935,
    0xcfcfdca45fb2b1c5,
    0x773278d4ec1b455c,
    0xef3c1ecfbbe44d1a,
    0xbf1bc447d07ae0fe,
    0x9df7bccc4e7498a7,
    0x2dea3662b579bb68,
    0x5cd0091a07a58a4b,
    0xdd95f50f36498561,
    0xb5f361e05faa2371,
    0xac82848eac443124,
    0x20ecdbef2da54633,
    0x9f282857de48da4d,
    0xce3b2a437d2a1865,
    0x31ef8228be328dfa,
    0xef36993d9abf0cae,
    0x5dc3b10697230364,
    0x9867d0c85467bc34,
    0xae80175326d94c1f,
    0x5ce6523d18f310e,
    0x4391c3e98c71e73a,
    0xbe78a5ff21c5d550,
    0x285fdce08595bd63,
    0x6342948245525cff,
    0x3b6928e0a655b6bf,
    0x6944627c279a1c1c,
    0x95ec13f8105f4f95,
    0xf28428976ff301c1,
    0xcd6546be02d034ac,
    0x5efa2f8d1f8250a3,
    0xa1b63f70e39c495b,
    0xe3a0cb7f37cbf2fb,
    0x301582e24cf1700c,
    0xbfcde107ec30059e,
    0x5bae29eae2b12553,
    0xd54019230f5df6f,
    0x49e475ce9ec72a95,
    0x9c5ca43f9eb5729a,
    0x74c8ecdf534b5543,
    0xdf70e82dea377dc6,
    0x9ca4198dfc379688,
    0x99430175f5d15663,
    0x15f0cf08513cec93,
    0x6e6eea817bd2c9f,
    0x9abdbd4909d3a6c5,
    0x8d8841c25458d2bf,
    0x180d932c74ed9970,
    0x19e99d2f725f85d2,
    0x6b5bca9f9468f565,
    0x597a99cd0e643b45,
    0x12387537f7c6a6b6,
    0xf68e9fc39e88d140,
    0xb5e6571b6baf4f09,
    0x99ff59891bee42f6,
    0x8db7248a80563d99,
    0x6b19696edb99f988,
    0xcfc3b24de523bdc9,
    0x6da898fd8aeb60a2,
    0xbf9c1ab78b2e7eb9,
];

#[test]
fn one_pixel_images_pass_every_transform() {
    let px = Rgb8 { width: 1, height: 1, data: vec![10, 200, 30] };
    let cfg = DataConfig { input_size: [3, 5, 4], ..DataConfig::default() };
    for interp in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Nearest] {
        let cfg = DataConfig { interpolation: interp, ..cfg.clone() };
        let e = EvalTransform::new(&cfg).apply(&px);
        assert_eq!(e.shape, [5, 4, 3]);
        let t = TrainTransform::new(&cfg);
        let a = t.augment(&px, &mut SplitMix64::new(1));
        assert_eq!((a.width, a.height), (4, 5));
        assert!(a.data.chunks(3).all(|p| p == [10, 200, 30]), "{interp:?}: {:?}", a.data);
        assert_eq!(t.apply(&px, &mut SplitMix64::new(1)).shape, [5, 4, 3]);
    }
    assert_eq!(transforms::hflip(&px), px);
    assert_eq!(transforms::crop(&px, 0, 0, 1, 1), px);
    assert_eq!(transforms::center_crop(&px, 1, 1), px);
}

// ------------------------------------------------------------------ loader

fn dataset(r: &Path) -> ImageFolder {
    for (c, n) in [("cat", 7), ("dog", 6)] {
        for i in 0..n {
            let (w, h) = (9 + 3 * i, 20 - i);
            if i % 2 == 0 {
                write_png(&r.join(format!("{c}/{i}.png")), w, h, i);
            } else {
                write_jpeg(&r.join(format!("{c}/{i}.jpg")), w, h, i);
            }
        }
    }
    write_png(&r.join("cat/one.png"), 1, 1, 9);
    ImageFolder::open(r).unwrap()
}

fn run(
    samples: &[(PathBuf, usize)],
    order: &[usize],
    t: &Transform,
    threads: usize,
    bs: usize,
) -> (Vec<Batch>, Vec<Skipped>) {
    let cfg = LoaderConfig::new(bs).with_threads(threads).with_prefetch(2).with_seed(11).with_epoch(3);
    let mut l = Loader::new(samples.to_vec(), order.to_vec(), t.clone(), cfg).unwrap();
    assert_eq!(l.num_batches(), order.len().div_ceil(bs));
    let batches: Vec<Batch> = (&mut l).collect();
    (batches, l.skipped().to_vec())
}

#[test]
fn batches_are_identical_across_thread_counts_and_bad_files_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let mut f = dataset(d.path());
    // a truncated JPEG and a garbage PNG, both in class "dog"
    let good = std::fs::read(d.path().join("dog/1.jpg")).unwrap();
    touch(&d.path().join("dog/trunc.jpg"), &good[..good.len() - 40]);
    touch(&d.path().join("dog/zz.png"), b"\x89PNG garbage");
    f = ImageFolder::open(&f.root).unwrap();
    assert_eq!(f.len(), 16);
    let order = shuffled_order(f.len(), 5, 0);
    let cfg = DataConfig { input_size: [3, 6, 5], ..DataConfig::default() };
    for t in [Transform::Train(TrainTransform::new(&cfg)), Transform::Eval(EvalTransform::new(&cfg))] {
        let (one, skipped1) = run(&f.samples, &order, &t, 1, 5);
        let (two, skipped2) = run(&f.samples, &order, &t, 2, 5);
        let (three, _) = run(&f.samples, &order, &t, 3, 4);
        assert_eq!(one, two);
        assert_eq!(skipped1, skipped2);
        let names: Vec<_> = skipped1.iter().map(|s| s.path.file_name().unwrap().to_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["trunc.jpg", "zz.png"]);
        assert!(skipped1.iter().all(|s| s.reason.contains(s.path.file_name().unwrap().to_str().unwrap())));
        // every good sample once, in order, with its label; other batch sizes give the same images
        let flat = |bs: &[Batch]| bs.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>();
        let want: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| !f.samples[i].0.ends_with("trunc.jpg") && !f.samples[i].0.ends_with("zz.png"))
            .collect();
        assert_eq!(flat(&one), want);
        assert_eq!(flat(&three), want);
        let all1: Vec<f32> = one.iter().flat_map(|b| b.images.clone()).collect();
        let all3: Vec<f32> = three.iter().flat_map(|b| b.images.clone()).collect();
        assert_eq!(all1, all3);
        for b in &one {
            assert_eq!(b.shape, [b.labels.len(), 6, 5, 3]);
            assert_eq!(b.images.len(), b.labels.len() * 6 * 5 * 3);
            for (&i, &l) in b.indices.iter().zip(&b.labels) {
                assert_eq!(f.samples[i].1 as u32, l);
            }
        }
    }
    // another epoch gives other crops
    let t = Transform::Train(TrainTransform::new(&cfg));
    let cfg0 = LoaderConfig::new(16).with_threads(2).with_seed(11);
    let e0 = Loader::new(f.samples.clone(), order.clone(), t.clone(), cfg0.clone()).unwrap().next().unwrap();
    let e1 = Loader::new(f.samples.clone(), order.clone(), t, cfg0.with_epoch(1)).unwrap().next().unwrap();
    assert_ne!(e0.images, e1.images);
}

#[test]
fn loader_rejects_bad_settings_and_stops_when_dropped_early() {
    let d = tempfile::tempdir().unwrap();
    let f = dataset(d.path());
    let t = Transform::Eval(EvalTransform::new(&DataConfig { input_size: [3, 4, 4], ..DataConfig::default() }));
    let bad =
        |order: Vec<usize>, cfg: LoaderConfig, t: Transform| Loader::new(f.samples.clone(), order, t, cfg).is_err();
    assert!(bad(vec![0], LoaderConfig::new(0), t.clone()));
    assert!(bad(vec![f.len()], LoaderConfig::new(1), t.clone()));
    let zero = Transform::Eval(EvalTransform::new(&DataConfig { input_size: [3, 0, 4], ..DataConfig::default() }));
    assert!(bad(vec![0], LoaderConfig::new(1), zero));
    // dropping a loader mid-epoch joins its workers
    let mut l =
        Loader::new(f.samples.clone(), (0..f.len()).collect(), t, LoaderConfig::new(1).with_threads(2)).unwrap();
    assert_eq!(l.next().unwrap().shape, [1, 4, 4, 3]);
    drop(l);
    let empty = Loader::new(
        f.samples.clone(),
        vec![],
        Transform::Train(TrainTransform::new(&DataConfig::default())),
        LoaderConfig::new(4),
    )
    .unwrap();
    assert_eq!(empty.count(), 0);
}
