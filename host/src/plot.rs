//! Plots of a comparison: the federated learning curve and a bar chart of
//! the final accuracies. PNG or SVG, chosen by the file extension.
//!
//! Text is drawn with DejaVu Sans, compiled into the binary, so a plot looks
//! the same on every machine and needs no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use fedcore::Metrics;

use crate::compare::Comparison;

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1000;
/// Room right of the learning curve for its legend, in pixels.
const LEGEND_WIDTH: u32 = 330;

/// Error from drawing a plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in `.png` or `.svg`.
    #[error("plot file {} must end in .png or .svg", .0.display())]
    Extension(PathBuf),
    /// Drawing or writing failed.
    #[error("failed to draw {}: {message}; check that its folder exists and is writable", .path.display())]
    Draw {
        /// The plot file.
        path: PathBuf,
        /// The backend's error.
        message: String,
    },
}

fn register_fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bundled font is valid TrueType, which the plot test exercises,
        // so registration does not fail at run time.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws `comparison` into `path`, a `.png` or `.svg` file.
pub fn draw(comparison: &Comparison, path: &Path) -> Result<(), PlotError> {
    register_fonts();
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    let failed = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    match extension.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
            draw_on(&root, comparison).map_err(|error| failed(error.to_string()))?;
            root.present().map_err(|error| failed(error.to_string()))
        }
        Some("svg") => {
            let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
            draw_on(&root, comparison).map_err(|error| failed(error.to_string()))?;
            root.present().map_err(|error| failed(error.to_string()))
        }
        _ => Err(PlotError::Extension(path.to_path_buf())),
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    comparison: &Comparison,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 11 / 20);
    learning_curve(&top, comparison)?;
    final_bars(&bottom, comparison)?;
    Ok(())
}

fn pooled_accuracy(metrics: &[Option<Metrics>]) -> Option<f64> {
    let mut total = Metrics::default();
    for entry in metrics {
        total.merge(entry.as_ref()?);
    }
    total.accuracy()
}

const CENTRALIZED: RGBColor = RGBColor(110, 110, 110);
const FEDERATED: RGBColor = RGBColor(31, 119, 180);
const ISOLATED: RGBColor = RGBColor(230, 120, 20);
const DROPOUT: RGBColor = RGBColor(44, 160, 44);

fn hospital_color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(148, 103, 189),
        RGBColor(214, 39, 40),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
        RGBColor(227, 119, 194),
        RGBColor(140, 86, 75),
        RGBColor(127, 127, 127),
        RGBColor(255, 187, 120),
    ];
    COLORS[index % COLORS.len()]
}

fn learning_curve<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    comparison: &Comparison,
) -> DrawResult<DB> {
    let rounds = comparison.federated_rounds.len().max(1) as f64;
    let overall: Vec<(f64, f64)> = comparison
        .federated_rounds
        .iter()
        .filter_map(|record| {
            Some((
                f64::from(record.outcome.round),
                pooled_accuracy(&record.metrics)?,
            ))
        })
        .collect();
    let centralized: Vec<Option<Metrics>> =
        comparison.centralized.iter().copied().map(Some).collect();
    let references = [
        ("centralized", pooled_accuracy(&centralized), CENTRALIZED),
        ("isolated", pooled_accuracy(&comparison.isolated), ISOLATED),
    ];

    let mut lowest = 1.0f64;
    for record in &comparison.federated_rounds {
        for accuracy in record
            .metrics
            .iter()
            .flatten()
            .filter_map(Metrics::accuracy)
        {
            lowest = lowest.min(accuracy);
        }
    }
    for (_, value, _) in &references {
        lowest = lowest.min(value.unwrap_or(1.0));
    }
    let floor = ((lowest - 0.05) * 10.0).floor().max(0.0) / 10.0;

    let mut chart = ChartBuilder::on(area)
        .caption(
            "Federated learning curve: global model accuracy on each hospital's test rows",
            ("sans-serif", 22),
        )
        .margin(20)
        .margin_right(LEGEND_WIDTH)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..rounds + 0.5, floor..1.0f64)?;
    chart
        .configure_mesh()
        .x_desc("federated round")
        .y_desc("accuracy")
        .x_labels(comparison.federated_rounds.len().clamp(1, 20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    for (index, hospital) in comparison.hospitals.iter().enumerate() {
        let points: Vec<(f64, f64)> = comparison
            .federated_rounds
            .iter()
            .filter_map(|record| {
                let accuracy = record.metrics.get(index)?.as_ref()?.accuracy()?;
                Some((f64::from(record.outcome.round), accuracy))
            })
            .collect();
        let color = hospital_color(index);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("federated at {}", hospital.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_series(LineSeries::new(overall.clone(), FEDERATED.stroke_width(4)))?
        .label("federated, all test rows")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], FEDERATED.stroke_width(4)));
    chart.draw_series(
        overall
            .iter()
            .map(|&point| Circle::new(point, 4, FEDERATED.filled())),
    )?;

    for (name, value, color) in references {
        let Some(value) = value else { continue };
        let line = vec![(0.5, value), (rounds + 0.5, value)];
        chart
            .draw_series(DashedLineSeries::new(line, 10, 6, color.stroke_width(2)))?
            .label(format!("{name}, all test rows ({value:.3})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }

    // The legend sits right of the plotting area, where no line can pass
    // under it, however many hospitals there are.
    let (plot_width, _) = chart.plotting_area().dim_in_pixel();
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::Coordinate(plot_width as i32 + 15, 0))
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn final_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    comparison: &Comparison,
) -> DrawResult<DB> {
    let centralized: Vec<Option<Metrics>> =
        comparison.centralized.iter().copied().map(Some).collect();
    let approaches = [
        ("centralized", centralized, CENTRALIZED),
        ("federated", comparison.federated(), FEDERATED),
        ("isolated", comparison.isolated.clone(), ISOLATED),
        ("client dropout", comparison.dropout(), DROPOUT),
    ];
    let mut groups: Vec<String> = comparison
        .hospitals
        .iter()
        .map(|h| h.name.clone())
        .collect();
    groups.push("all test rows".to_owned());
    let group_count = groups.len();

    let mut chart = ChartBuilder::on(area)
        .caption("Final accuracy by approach", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        // Headroom above 1.0 keeps the legend clear of the bars.
        .build_cartesian_2d(-0.5f64..group_count as f64 - 0.5, 0.0f64..1.3)?;
    let labels = groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("hospital")
        .y_desc("accuracy")
        .x_labels(group_count)
        .x_label_formatter(&move |x| {
            let index = x.round();
            if (x - index).abs() > 1e-6 || index < 0.0 {
                return String::new();
            }
            labels.get(index as usize).cloned().unwrap_or_default()
        })
        .y_labels(14)
        .y_label_formatter(&|y| {
            if *y <= 1.0 + 1e-9 {
                format!("{y:.1}")
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let width = 0.8 / approaches.len() as f64;
    for (slot, (name, metrics, color)) in approaches.iter().enumerate() {
        let mut values: Vec<Option<f64>> = metrics
            .iter()
            .map(|m| m.as_ref().and_then(Metrics::accuracy))
            .collect();
        values.push(pooled_accuracy(metrics));
        let left = -0.4 + slot as f64 * width;
        let bars = values.into_iter().enumerate().filter_map(|(group, value)| {
            let value = value?;
            let x0 = group as f64 + left;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, value)],
                color.filled(),
            ))
        });
        let color = *color;
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
