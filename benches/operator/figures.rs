//! Where the proof round's figures go: each scenario keeps its rows in
//! `<--out>/<scenario>.tsv` (default `docs/benchmarks/`) and redraws its plot,
//! `<--out>/<scenario>.svg`, from every row there. A run replaces the rows with its own key
//! (e.g. the same number of agents and latency) and keeps the others, so the long sizes can be
//! run on their own (`--agents 100000`) and the plot still shows every size measured.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::err;

/// A tab-separated table with a header line; rows are identified by their first `key` columns.
pub struct Table {
    path: PathBuf,
    header: Vec<String>,
    key: usize,
    pub rows: Vec<Vec<String>>,
    /// Whether the file's path was printed.
    announced: bool,
}

impl Table {
    /// Reads `<dir>/<name>.tsv`. Rows written under another header (an older version of the
    /// scenario) keep the columns both have; a column they lack is `-`.
    pub fn open(dir: &Path, name: &str, header: &[&str], key: usize) -> Result<Table, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.tsv"));
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut lines = text.lines();
            let old: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
            rows = lines
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let cells: Vec<&str> = l.split('\t').collect();
                    header
                        .iter()
                        .map(|h| {
                            old.iter()
                                .position(|o| o == h)
                                .and_then(|i| cells.get(i))
                                .map_or_else(|| "-".to_owned(), |c| c.to_string())
                        })
                        .collect()
                })
                .collect();
        }
        Ok(Table {
            path,
            header,
            key,
            rows,
            announced: false,
        })
    }

    /// Drops every row.
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// Replaces the row with the same key (or adds it), keeps the rows sorted by key (numbers
    /// as numbers), and writes the file.
    pub fn put(&mut self, row: Vec<String>) -> Result<(), String> {
        if row.len() != self.header.len() {
            return Err(format!(
                "{}: a row of {} columns for a header of {}",
                self.path.display(),
                row.len(),
                self.header.len()
            ));
        }
        let key = self.key;
        self.rows.retain(|r| r[..key] != row[..key]);
        self.rows.push(row);
        self.rows.sort_by(|a, b| {
            for i in 0..key {
                let o = match (a[i].parse::<f64>(), b[i].parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.total_cmp(&y),
                    _ => a[i].cmp(&b[i]),
                };
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        self.save()
    }

    fn save(&mut self) -> Result<(), String> {
        let mut text = self.header.join("\t");
        text.push('\n');
        for r in &self.rows {
            text.push_str(&r.join("\t"));
            text.push('\n');
        }
        std::fs::write(&self.path, text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        if !self.announced {
            println!("  figures: {}", self.path.display());
            self.announced = true;
        }
        Ok(())
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// `(x, y)` of every row whose column `filter.0` is `filter.1` (all rows when `None`) and
    /// whose x and y are numbers.
    /// One measured series per `(name, column)`, each against column `x`.
    pub fn series(&self, x: &str, columns: &[(&str, &str)]) -> Vec<Series> {
        columns
            .iter()
            .map(|(name, y)| Series::measured(*name, self.points(x, y, None)))
            .collect()
    }

    pub fn points(&self, x: &str, y: &str, filter: Option<(&str, &str)>) -> Vec<(f64, f64)> {
        let (Some(xi), Some(yi)) = (self.column(x), self.column(y)) else {
            return Vec::new();
        };
        let fi = filter.and_then(|(c, v)| Some((self.column(c)?, v)));
        if filter.is_some() && fi.is_none() {
            return Vec::new();
        }
        self.rows
            .iter()
            .filter(|r| fi.is_none_or(|(c, v)| r[c] == v))
            .filter_map(|r| Some((r[xi].parse().ok()?, r[yi].parse().ok()?)))
            .collect()
    }

    /// The distinct values of a column, in row order.
    pub fn values(&self, column: &str) -> Vec<String> {
        let Some(c) = self.column(column) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r[c]) {
                out.push(r[c].clone());
            }
        }
        out
    }
}

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// A bound or a target rather than a measurement: drawn dashed, without markers.
    pub dashed: bool,
}

impl Series {
    pub fn measured(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    pub fn reference(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            dashed: true,
        }
    }
}

/// Axis labels: 1,000 as 1k, no trailing zeros.
fn short(v: f64) -> String {
    let a = v.abs();
    let (v, unit) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{unit}")
}

/// Strong colours that stay apart on white (blue, red, green, orange, purple, black).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(0, 0, 0),
];

macro_rules! draw {
    ($root:expr, $title:expr, $x:expr, $y:expr, $xr:expr, $yr:expr, $series:expr) => {{
        let mut chart = ChartBuilder::on(&$root)
            .caption($title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d($xr, $yr)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc($x)
            .y_desc($y)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw()
            .map_err(err)?;
        for (i, s) in $series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()].to_rgba();
            let style = color.stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|p| Cross::new(*p, 4, color.stroke_width(1))),
                    )
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.clone(), style))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }};
}

/// Draws `series` into an SVG file; both axes logarithmic when `log`.
pub fn chart(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    log: bool,
    series: &[Series],
) -> Result<(), String> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| !log || (*x > 0.0 && *y > 0.0))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| !log || (*x > 0.0 && *y > 0.0))
                .collect(),
            dashed: s.dashed,
        })
        .collect();
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    if log {
        (x0, x1, y0, y1) = (x0 / 1.5, x1 * 1.5, y0 / 2.0, y1 * 2.0);
        draw!(
            root,
            title,
            x,
            y,
            (x0..x1).log_scale(),
            (y0..y1).log_scale(),
            series
        );
    } else {
        let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-9);
        let (px, py) = (pad(x0, x1), pad(y0, y1));
        (x0, x1, y0, y1) = (x0.min(0.0), x1 + px, y0.min(0.0), y1 + py * 4.0);
        draw!(root, title, x, y, x0..x1, y0..y1, series);
    }
    root.present().map_err(err)?;
    println!("  plot: {}", path.display());
    Ok(())
}
