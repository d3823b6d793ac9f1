//! Colour maps as piecewise-linear interpolation through control points sampled from
//! matplotlib's `Blues` (ColorBrewer), `magma` and `coolwarm` (Moreland) at nine even steps.

use plotters::style::RGBColor;

/// A sequential or diverging colour map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Colormap {
    /// White to dark blue (confusion matrices).
    Blues,
    /// Black through purple and orange to pale yellow (librosa's default for one-signed data).
    Magma,
    /// Blue through grey to red (librosa's default for data of both signs, e.g. MFCC).
    CoolWarm,
}

const BLUES: [(u8, u8, u8); 9] = [
    (0xf7, 0xfb, 0xff),
    (0xde, 0xeb, 0xf7),
    (0xc6, 0xdb, 0xef),
    (0x9e, 0xca, 0xe1),
    (0x6b, 0xae, 0xd6),
    (0x42, 0x92, 0xc6),
    (0x21, 0x71, 0xb5),
    (0x08, 0x51, 0x9c),
    (0x08, 0x30, 0x6b),
];

const MAGMA: [(u8, u8, u8); 9] = [
    (0x00, 0x00, 0x04),
    (0x1c, 0x10, 0x44),
    (0x4f, 0x12, 0x7b),
    (0x81, 0x25, 0x81),
    (0xb5, 0x36, 0x7a),
    (0xe5, 0x50, 0x64),
    (0xfb, 0x87, 0x61),
    (0xfe, 0xc2, 0x87),
    (0xfc, 0xfd, 0xbf),
];

const COOLWARM: [(u8, u8, u8); 9] = [
    (59, 76, 192),
    (98, 130, 234),
    (141, 176, 254),
    (184, 208, 249),
    (221, 221, 221),
    (245, 196, 173),
    (244, 154, 123),
    (222, 96, 77),
    (180, 4, 38),
];

impl Colormap {
    /// Colour at `t` in `[0, 1]` (clamped; NaN gives the low end).
    pub(crate) fn color(self, t: f64) -> RGBColor {
        let stops = match self {
            Colormap::Blues => &BLUES,
            Colormap::Magma => &MAGMA,
            Colormap::CoolWarm => &COOLWARM,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let pos = t * (stops.len() - 1) as f64;
        let i = (pos.floor() as usize).min(stops.len() - 2);
        let f = pos - i as f64;
        let lerp = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
        let (a, b) = (stops[i], stops[i + 1]);
        RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
    }

    /// Relative luminance of the colour at `t`, in `[0, 1]`; above ~0.5 wants black text.
    pub(crate) fn luminance(self, t: f64) -> f64 {
        let RGBColor(r, g, b) = self.color(t);
        (0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)) / 255.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_clamping() {
        assert_eq!(Colormap::Blues.color(0.0), RGBColor(0xf7, 0xfb, 0xff));
        assert_eq!(Colormap::Blues.color(1.0), RGBColor(0x08, 0x30, 0x6b));
        assert_eq!(Colormap::Magma.color(-3.0), Colormap::Magma.color(0.0));
        assert_eq!(Colormap::CoolWarm.color(7.0), RGBColor(180, 4, 38));
        assert_eq!(Colormap::CoolWarm.color(0.5), RGBColor(221, 221, 221));
        assert_eq!(Colormap::Magma.color(f64::NAN), Colormap::Magma.color(0.0));
        assert!(Colormap::Blues.luminance(0.0) > 0.9 && Colormap::Blues.luminance(1.0) < 0.3);
    }
}
