//! The chart of a load run, drawn with `plotters`: received messages per second with their
//! p50 and p99 latency over time (top), and the relay's RSS and CPU (bottom), the scenario's
//! phases marked on both. SVG or PNG, by the file's extension.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::bail;
use plotters::chart::DualCoordChartContext;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::report::{Report, Second};

/// Width and height of the chart, pixels.
const SIZE: (u32, u32) = (1100, 760);
/// Height of the top (traffic) panel, pixels; the relay's panel takes the rest.
const TOP: u32 = 470;
/// The family every text is set in (DejaVu Sans, embedded, so a PNG needs no system font).
const FAMILY: &str = "sans-serif";

const RECEIVED: RGBColor = RGBColor(94, 142, 200);
const P50: RGBColor = RGBColor(216, 87, 42);
const P99: RGBColor = RGBColor(140, 40, 120);
const RSS: RGBColor = RGBColor(40, 120, 70);
const CPU: RGBColor = RGBColor(200, 140, 20);
const PHASE: RGBColor = RGBColor(90, 90, 90);

/// What a chart file is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format named by `path`'s extension (`svg` or `png`, any case).
    pub(crate) fn of(path: &Path) -> anyhow::Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => bail!("a chart is written as .svg or .png, not {}", path.display()),
        }
    }
}

/// Writes the chart of `report` to `path` (SVG or PNG by its extension).
pub(crate) fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    match Format::of(path)? {
        Format::Svg => {
            let mut svg = String::new();
            draw(
                SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
                report,
            )?;
            std::fs::write(path, svg)?;
        }
        Format::Png => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), report)?,
    }
    Ok(())
}

/// Makes the embedded DejaVu Sans the chart's font (once per process).
fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if !ok {
        bail!("the embedded chart font did not load");
    }
    Ok(())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draws both panels on `root` and writes them out (the backend's file or string).
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Report) -> anyhow::Result<()> {
    let drawn = (|| {
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(TOP);
        let t = window(r);
        traffic(&top, r, t.clone())?;
        relay(&bottom, r, t)?;
        root.present()
    })();
    drawn.map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))
}

/// The time axis: from the first phase mark, sample or receipt to the last, whole seconds
/// (setting up users and connections before the first phase is left out).
fn window(r: &Report) -> Range<f64> {
    let starts = [
        r.timeline.first().map(|s| f64::from(s.t_s)),
        r.relay_samples.first().map(|s| s.t_s),
        r.phases.first().map(|p| p.start_s),
    ];
    let ends = [
        r.timeline.last().map(|s| f64::from(s.t_s) + 1.0),
        r.relay_samples.last().map(|s| s.t_s),
        r.phases.last().map(|p| p.start_s),
    ];
    let start = starts.into_iter().flatten().fold(f64::INFINITY, f64::min);
    let start = if start.is_finite() {
        start.floor()
    } else {
        0.0
    };
    let end = ends.into_iter().flatten().fold(start, f64::max).ceil();
    start..end.max(start + 1.0)
}

/// Received msg/s (bars, left axis) and p50/p99 latency (lines, right axis, log scale).
fn traffic<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    t: Range<f64>,
) -> DrawResult<DB> {
    let received_max = r.timeline.iter().map(|s| s.received).max().unwrap_or(0);
    // Headroom above the bars and lines for the legend and the phase names.
    let y_max = (received_max as f64 * 1.4).max(10.0);
    let floor = 0.01;
    let lat_lo = r
        .timeline
        .iter()
        .map(|s| s.p50_ms)
        .fold(f64::INFINITY, f64::min)
        .clamp(floor, 1.0)
        / 2.0;
    let lat_hi = r.timeline.iter().map(|s| s.p99_ms).fold(1.0, f64::max) * 6.0;
    let caption = format!(
        "{} · {} · {}: {:.0} msg/s, latency p50 {:.2} ms, p99 {:.2} ms",
        r.scenario,
        r.crypto_mode,
        r.payloads,
        r.throughput_msgs_per_s,
        r.latency_ms.p50,
        r.latency_ms.p99
    );
    let mut chart = panel(area, caption, 18)
        .build_cartesian_2d(t.clone(), 0.0..y_max)?
        .set_secondary_coord(t, (lat_lo..lat_hi).log_scale());
    axes(&mut chart, "received (msg/s)", "latency (ms, log scale)")?;
    chart
        .draw_series(r.timeline.iter().map(|s| {
            let t = f64::from(s.t_s);
            Rectangle::new(
                [(t + 0.05, 0.0), (t + 0.95, s.received as f64)],
                RECEIVED.mix(0.55).filled(),
            )
        }))?
        .label("received (msg/s, left axis)")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], RECEIVED.mix(0.55).filled())
        });
    let p50: fn(&Second) -> f64 = |s| s.p50_ms;
    let p99: fn(&Second) -> f64 = |s| s.p99_ms;
    for (color, label, latency) in [
        (P50, "p50 latency (ms, right axis)", p50),
        (P99, "p99 latency (ms, right axis)", p99),
    ] {
        chart
            .draw_secondary_series(LineSeries::new(
                r.timeline
                    .iter()
                    .map(|s| (f64::from(s.t_s) + 0.5, latency(s).max(lat_lo))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
    }
    finish(&mut chart, r, y_max)
}

/// The relay's RSS (left axis) and CPU (right axis), one sample a second.
fn relay<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    t: Range<f64>,
) -> DrawResult<DB> {
    // Headroom above the lines for the legend and the phase names.
    let rss_max = r.relay_samples.iter().map(|s| s.rss_mb).fold(1.0, f64::max) * 1.5;
    let cpu_max = r
        .relay_samples
        .iter()
        .map(|s| s.cpu_percent)
        .fold(100.0, f64::max)
        * 1.5;
    let mut chart = panel(area, "relay".into(), 16)
        .build_cartesian_2d(t.clone(), 0.0..rss_max)?
        .set_secondary_coord(t, 0.0..cpu_max);
    axes(&mut chart, "RSS (MB)", "CPU (% of one core)")?;
    chart
        .draw_series(LineSeries::new(
            r.relay_samples.iter().map(|s| (s.t_s, s.rss_mb)),
            RSS.stroke_width(2),
        ))?
        .label("RSS (MB, left axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], RSS.stroke_width(2)));
    // The first sample has no CPU figure (a rate needs two readings).
    chart
        .draw_secondary_series(LineSeries::new(
            r.relay_samples
                .iter()
                .skip(1)
                .map(|s| (s.t_s, s.cpu_percent)),
            CPU.stroke_width(2),
        ))?
        .label("CPU (% of one core, right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], CPU.stroke_width(2)));
    finish(&mut chart, r, rss_max)
}

/// A panel's builder: its caption (`size` px), margins, room for both y axes' labels.
fn panel<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: String,
    size: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.caption(caption, (FAMILY, size))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70);
    b
}

/// The shared time axis and both y axes, described and labelled in the chart's font.
fn axes<'a, DB, Y2>(
    chart: &mut DualCoordChartContext<
        'a,
        DB,
        Cartesian2d<RangedCoordf64, RangedCoordf64>,
        Cartesian2d<RangedCoordf64, Y2>,
    >,
    left: &str,
    right: &str,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    Y2: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc(left)
        .y_label_formatter(&tick)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc(right)
        .y_label_formatter(&tick)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()?;
    Ok(())
}

/// A y-axis value: whole numbers from 1 up, two decimals below (a log axis reaches 0.01 ms).
fn tick(v: &f64) -> String {
    if v.abs() >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The phases marked (a vertical line and the phase's name at each start) and the legend.
fn finish<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    r: &Report,
    y_max: f64,
) -> DrawResult<DB>
where
    Y: Ranged<ValueType = f64>,
{
    for p in &r.phases {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(p.start_s, 0.0), (p.start_s, y_max)],
            PHASE.mix(0.6).stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            p.phase.clone(),
            (p.start_s, y_max * 0.985),
            (FAMILY, 12).into_font().color(&PHASE),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::{Latency, PhaseMark, Sample, Second};

    fn report() -> Report {
        Report {
            scenario: "guide scenario".into(),
            crypto_mode: "hybrid".into(),
            payloads: "sessions".into(),
            messages_sent: 30,
            messages_acked: 30,
            messages_received: 30,
            opened: true,
            duplicates: 0,
            redelivered: 0,
            lost: 0,
            key_exchanges: 0,
            receiver_reconnects: 0,
            errors: Default::default(),
            throughput_msgs_per_s: 10.0,
            latency_ms: Latency {
                p50: 1.5,
                p95: 4.0,
                p99: 9.0,
                max: 12.0,
            },
            relay_rss_mb_max: 80.0,
            relay_cpu_percent_mean: 40.0,
            relay_cpu_percent_by_phase: Vec::new(),
            offered: Vec::new(),
            relay_active_connections: None,
            relay_acks_applied: None,
            connections_max: 3,
            duration_s: 3.0,
            rss_mb_per_1000_connections: None,
            relay_rss_mb_before: None,
            relay_rss_mb_settled: None,
            relay_samples: (0..4)
                .map(|t| Sample {
                    t_s: f64::from(t),
                    rss_mb: 70.0 + f64::from(t),
                    cpu_percent: 30.0 + f64::from(t),
                    connections: 3,
                })
                .collect(),
            phases: vec![
                PhaseMark {
                    phase: "warm-up".into(),
                    start_s: 0.0,
                },
                PhaseMark {
                    phase: "peak".into(),
                    start_s: 2.0,
                },
            ],
            timeline: (0..3)
                .map(|t| Second {
                    t_s: t,
                    received: 10,
                    p50_ms: 1.5,
                    p99_ms: 9.0,
                })
                .collect(),
        }
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.svg")).ok(), Some(Format::Svg));
        assert_eq!(Format::of(Path::new("b.PNG")).ok(), Some(Format::Png));
        assert!(Format::of(Path::new("b.jpg")).is_err());
        assert!(Format::of(Path::new("chart")).is_err());
    }

    #[test]
    fn the_svg_labels_axes_series_and_phases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        write(&report(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "time since start (s)",
            "received (msg/s)",
            "latency (ms, log scale)",
            "p50 latency (ms, right axis)",
            "p99 latency (ms, right axis)",
            "RSS (MB)",
            "CPU (% of one core)",
            "warm-up",
            "peak",
            "guide scenario · hybrid · sessions",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
    }

    #[test]
    fn the_png_has_the_chart_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.png");
        write(&report(), &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(png[16..20], SIZE.0.to_be_bytes());
        assert_eq!(png[20..24], SIZE.1.to_be_bytes());
        // Not a blank image: a white canvas compresses far below this.
        assert!(png.len() > 20_000, "{} bytes", png.len());
    }

    #[test]
    fn the_time_axis_spans_the_phases_not_the_setup() {
        let mut r = report();
        for p in &mut r.phases {
            p.start_s += 12.4;
        }
        for s in &mut r.relay_samples {
            s.t_s += 12.4;
        }
        for s in &mut r.timeline {
            s.t_s += 13;
        }
        // Phases from 12.4 s, samples to 15.4 s, receipts to 16 s.
        assert_eq!(window(&r), 12.0..16.0);
        r.timeline.clear();
        r.relay_samples.clear();
        r.phases.clear();
        assert_eq!(window(&r), 0.0..1.0);
    }

    #[test]
    fn an_empty_run_still_draws() {
        let mut r = report();
        r.timeline.clear();
        r.relay_samples.clear();
        r.phases.clear();
        let dir = tempfile::tempdir().unwrap();
        write(&r, &dir.path().join("empty.svg")).unwrap();
        write(&r, &dir.path().join("empty.png")).unwrap();
    }
}
