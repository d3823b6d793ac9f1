//! The one model summary renderer ([`SummaryTable`]): Keras 3's `model.summary()` table,
//! byte for byte as Keras prints it to a file or pipe (no colour): 80 columns, the `rich`
//! box characters, column widths from Keras' positions `[0.45, 0.80, 1.0]` shrunk the
//! way `rich` shrinks them, right-aligned parameter counts with thousands separators, and
//! sizes in B, KB, MB ... (1 KB = 1024 B, two decimals). After `fit`, Keras' "Optimizer
//! params" line is added. `Sequential::summary` and every zoo model's summary render
//! through it.

use crate::Sequential;
use crate::training::Trainable;

/// Table width Keras uses when the terminal is at least 84 columns (and in the fixture).
const LINE_LENGTH: usize = 80;

/// `rich`'s `ratio_reduce`: takes `total` away from `values` in proportion to `ratios`,
/// rounding like Python (half to even).
fn ratio_reduce(total: usize, ratios: &[usize], maximums: &[usize], values: &[usize]) -> Vec<usize> {
    let ratios: Vec<usize> = ratios.iter().zip(maximums).map(|(r, m)| if *m > 0 { *r } else { 0 }).collect();
    let mut total_ratio: usize = ratios.iter().sum();
    if total_ratio == 0 {
        return values.to_vec();
    }
    let mut remaining = total as f64;
    let mut out = Vec::with_capacity(values.len());
    for ((ratio, maximum), value) in ratios.iter().zip(maximums).zip(values) {
        if *ratio > 0 && total_ratio > 0 {
            let share = (*ratio as f64 * remaining / total_ratio as f64).round_ties_even();
            let distributed = (*maximum as f64).min(share) as usize;
            out.push(value.saturating_sub(distributed));
            remaining -= distributed as f64;
            total_ratio -= ratio;
        } else {
            out.push(*value);
        }
    }
    out
}

/// Content widths of the columns (padding excluded) for `line_length` and `positions`.
fn column_widths(line_length: usize, positions: &[f64]) -> Vec<usize> {
    let mut widths = Vec::new();
    let mut current = 0;
    for p in positions {
        let w = (p * line_length as f64) as usize - current;
        widths.push(w);
        current += w;
    }
    // rich: fixed-width columns plus one space of padding each side, then squeezed evenly
    // into the table width minus its borders
    let padded: Vec<usize> = widths.iter().map(|w| w + 2).collect();
    let max_width = line_length - (positions.len() + 1);
    let total: usize = padded.iter().sum();
    let padded = if total > max_width {
        ratio_reduce(total - max_width, &vec![1; padded.len()], &padded, &padded)
    } else {
        padded
    };
    padded.iter().map(|w| w.saturating_sub(2)).collect()
}

/// Splits `text` into lines of at most `width` characters at spaces (rich's wrapping).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let len = line.chars().count();
            let wlen = word.chars().count();
            if len == 0 && wlen > width {
                // a word longer than the column is cut
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
                continue;
            }
            if len > 0 && len + 1 + wlen > width {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            if len > 0 {
                line.push(' ');
            }
            line.push_str(&word);
            break;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras' `readable_memory_size`: `1.74 MB`, `0.00 B`.
pub(crate) fn readable_size(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    for unit in units {
        if size / 1024.0 < 1.0 {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.2} PB")
}

/// Renders rows of cells (each a column's text) as rich's table body lines.
fn render_row(cells: &[String], widths: &[usize], right: &[bool], bar: char) -> Vec<String> {
    let wrapped: Vec<Vec<String>> = cells.iter().zip(widths).map(|(c, w)| wrap(c, *w)).collect();
    let height = wrapped.iter().map(|w| w.len()).max().unwrap_or(1);
    (0..height)
        .map(|i| {
            let mut line = String::new();
            line.push(bar);
            for ((lines, w), r) in wrapped.iter().zip(widths).zip(right) {
                let text = lines.get(i).map_or("", |s| s.as_str());
                let pad = w.saturating_sub(text.chars().count());
                line.push(' ');
                if *r {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(text);
                } else {
                    line.push_str(text);
                    line.push_str(&" ".repeat(pad));
                }
                line.push(' ');
                line.push(bar);
            }
            line
        })
        .collect()
}

/// A horizontal rule: `left`, `fill` over each padded column, `mid` between, `right`.
fn rule(widths: &[usize], left: char, fill: char, mid: char, right: char) -> String {
    let parts: Vec<String> = widths.iter().map(|w| fill.to_string().repeat(w + 2)).collect();
    format!("{left}{}{right}", parts.join(&mid.to_string()))
}

/// `(None, 28, 28, 32)`.
fn shape_text(shape: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(shape.iter().map(|d| d.to_string()));
    format!("({})", parts.join(", "))
}

/// One row of a summary: a layer or module, its output and its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// `name (Type)`: `conv2d (Conv2D)`, `layer1.0 (BasicBlock)`.
    pub layer: String,
    /// Per-sample output shape (printed after `None` for the batch axis).
    pub shape: Vec<usize>,
    /// Weights under the layer.
    pub params: usize,
}

/// A model summary: rows and totals, rendered as Keras' table by `Display`.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryTable {
    /// The model's name.
    pub name: String,
    /// Rows in execution order.
    pub rows: Vec<SummaryRow>,
    /// Values the optimizer updates.
    pub trainable: usize,
    /// Values it does not (frozen parameters, running statistics).
    pub non_trainable: usize,
    /// Optimizer variables and their bytes, once the optimizer has state.
    pub optimizer: Option<(usize, usize)>,
    /// Lines printed after the totals (`GMACs: 4.109`).
    pub notes: Vec<String>,
}

impl std::fmt::Display for SummaryTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let widths = column_widths(LINE_LENGTH, &[0.45, 0.80, 1.0]);
        let right = [false, false, true];
        let mut out = format!("Model: \"{}\"\n", self.name);
        out.push_str(&rule(&widths, '┏', '━', '┳', '┓'));
        out.push('\n');
        let header = ["Layer (type)".to_string(), "Output Shape".to_string(), "Param #".to_string()];
        for line in render_row(&header, &widths, &right, '┃') {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&rule(&widths, '┡', '━', '╇', '┩'));
        out.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push_str(&rule(&widths, '├', '─', '┼', '┤'));
                out.push('\n');
            }
            let cells = [row.layer.clone(), shape_text(&row.shape), thousands(row.params)];
            for line in render_row(&cells, &widths, &right, '│') {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.push_str(&rule(&widths, '└', '─', '┴', '┘'));
        out.push('\n');
        let (trainable, frozen) = (self.trainable, self.non_trainable);
        let (opt_count, opt_bytes) = self.optimizer.unwrap_or((0, 0));
        let total = trainable + frozen + opt_count;
        let total_bytes = 4 * (trainable + frozen) + opt_bytes;
        out.push_str(&format!(" Total params: {} ({})\n", thousands(total), readable_size(total_bytes as f64)));
        out.push_str(&format!(
            " Trainable params: {} ({})\n",
            thousands(trainable),
            readable_size(4.0 * trainable as f64)
        ));
        out.push_str(&format!(
            " Non-trainable params: {} ({})\n",
            thousands(frozen),
            readable_size(4.0 * frozen as f64)
        ));
        if self.optimizer.is_some() {
            out.push_str(&format!(
                " Optimizer params: {} ({})\n",
                thousands(opt_count),
                readable_size(opt_bytes as f64)
            ));
        }
        for note in &self.notes {
            out.push_str(&format!(" {note}\n"));
        }
        f.write_str(&out)
    }
}

impl SummaryTable {
    /// The totals of `model`'s store (trainable and not) and its optimizer's variables, with
    /// `rows`.
    pub fn of(model: &dyn Trainable, name: impl Into<String>, rows: Vec<SummaryRow>) -> SummaryTable {
        let store = model.params();
        let trainable = store.trainable_count();
        let all: usize = store.iter().map(|(_, e)| e.value().numel()).sum();
        let optimizer =
            model.trainer().map(|t| t.optimizer()).filter(|o| o.built()).map(|o| o.variable_count(trainable));
        SummaryTable {
            name: name.into(),
            rows,
            trainable,
            non_trainable: all - trainable,
            optimizer,
            notes: Vec::new(),
        }
    }
}

impl Sequential {
    /// Keras 3's summary table, exactly as `model.summary()` prints it (80 columns).
    #[must_use = "the table is returned, not printed"]
    pub fn summary(&self) -> String {
        let rows = self
            .layers
            .iter()
            .map(|l| SummaryRow {
                layer: format!("{} ({})", l.name(), l.class_name()),
                shape: l.output_shape().to_vec(),
                params: l.params().iter().map(|&p| self.store.get(p).numel()).sum(),
            })
            .collect();
        SummaryTable::of(self, self.name.clone(), rows).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_match_keras_at_80_columns() {
        assert_eq!(column_widths(80, &[0.45, 0.80, 1.0]), vec![33, 24, 13]);
    }

    #[test]
    fn numbers_and_sizes_are_formatted_like_keras() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(832), "832");
        assert_eq!(thousands(51_264), "51,264");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(readable_size(0.0), "0.00 B");
        assert_eq!(readable_size(454_922.0 * 4.0), "1.74 MB");
        assert_eq!(readable_size(1023.0), "1023.00 B");
        assert_eq!(readable_size(12.0), "12.00 B");
        assert_eq!(readable_size(2048.0), "2.00 KB");
    }

    #[test]
    fn long_cells_wrap_at_spaces() {
        assert_eq!(wrap("a_very_long_layer_name (Conv2D)", 24), vec!["a_very_long_layer_name", "(Conv2D)"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 3), vec![""]);
    }
}
