//! The run's figure: for each scenario, the share of sites done over time, the tower's
//! egress over time, and what each site was sent against what it lacked, for both
//! designs. Drawn with plotters into memory and written as a PNG.

use crate::run::{Design, Outcome};
use plotters::prelude::*;
use plotters::style::register_font;
use std::error::Error;
use std::path::Path;

const WIDTH: u32 = 1800;
const ROW: u32 = 420;
const BLUE: RGBColor = RGBColor(26, 115, 232);
const ORANGE: RGBColor = RGBColor(230, 120, 20);

fn colour(design: Design) -> RGBColor {
    match design {
        Design::DedupResume => BLUE,
        Design::Naive => ORANGE,
    }
}

/// Draws `outcomes` (both designs of each scenario, in order) into a PNG at `path`.
pub fn draw(path: &Path, outcomes: &[Outcome], scenarios: &[&str]) -> Result<(), Box<dyn Error>> {
    register_font("sans-serif", FontStyle::Normal, notosans::REGULAR_TTF)
        .map_err(|_| "the bundled font does not load")?;
    let height = ROW * scenarios.len() as u32 + 50;
    let mut buffer = vec![0u8; (WIDTH * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Rollout to the fleet: dedup+resume (blue) against whole images (orange)",
            ("sans-serif", 26),
        )?;
        let rows = root.split_evenly((scenarios.len(), 3));
        for (r, scenario) in scenarios.iter().enumerate() {
            let runs: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.scenario == *scenario)
                .collect();
            done_over_time(&rows[r * 3], scenario, &runs)?;
            egress_over_time(&rows[r * 3 + 1], scenario, &runs)?;
            sent_against_lacked(&rows[r * 3 + 2], scenario, &runs)?;
        }
        root.present()?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, WIDTH, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    encoder.write_header()?.write_image_data(&buffer)?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Hours until the last sample of any run.
fn hours_span(runs: &[&Outcome]) -> f64 {
    runs.iter()
        .filter_map(|o| o.samples.last())
        .map(|s| s.t / 3600.0)
        .fold(0.1, f64::max)
}

/// Hours until every run had 99% of its sites done, and a quarter more.
fn hours_busy(runs: &[&Outcome]) -> f64 {
    let sites = runs.first().map_or(1, |o| o.per_site.len());
    let busy = runs
        .iter()
        .map(|o| o.time_to(0.99, sites).unwrap_or(f64::INFINITY) / 3600.0)
        .fold(0.1, f64::max);
    (busy * 1.25).min(hours_span(runs))
}

fn done_over_time(area: &Area, scenario: &str, runs: &[&Outcome]) -> Result<(), Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{scenario}: sites scheduled"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(
            (0.02f64..hours_span(runs).max(0.1)).log_scale(),
            0f64..100f64,
        )?;
    chart
        .configure_mesh()
        .x_desc("hours (log scale)")
        .y_desc("% of sites")
        .max_light_lines(2)
        .draw()?;
    for o in runs {
        let c = colour(o.design);
        chart
            .draw_series(LineSeries::new(
                o.samples
                    .iter()
                    .filter(|s| s.t > 0.0)
                    .map(|s| (s.t / 3600.0, s.done * 100.0)),
                c.stroke_width(2),
            ))?
            .label(o.design.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn egress_over_time(area: &Area, scenario: &str, runs: &[&Outcome]) -> Result<(), Box<dyn Error>> {
    let top = runs
        .iter()
        .flat_map(|o| o.samples.iter().map(|s| s.egress * 8.0 / 1e6))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{scenario}: tower egress"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..hours_busy(runs), 0f64..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("Mbit/s")
        .max_light_lines(2)
        .draw()?;
    for o in runs {
        let c = colour(o.design);
        chart.draw_series(LineSeries::new(
            o.samples
                .iter()
                .take_while(|s| s.t / 3600.0 <= hours_busy(runs))
                .map(|s| (s.t / 3600.0, s.egress * 8.0 / 1e6)),
            c.stroke_width(1),
        ))?;
    }
    Ok(())
}

fn sent_against_lacked(
    area: &Area,
    scenario: &str,
    runs: &[&Outcome],
) -> Result<(), Box<dyn Error>> {
    let mb = |b: u64| b as f64 / 1e6;
    let top_x = runs
        .iter()
        .flat_map(|o| o.per_site.iter().map(|(l, _)| mb(*l)))
        .fold(1.0, f64::max);
    let top_y = runs
        .iter()
        .flat_map(|o| o.per_site.iter().map(|(_, s)| mb(*s)))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{scenario}: sent to each site"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..top_x * 1.1, 0f64..top_y * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("MB the site lacked")
        .y_desc("MB sent to it")
        .max_light_lines(2)
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.0, 0.0), (top_x * 1.1, top_x * 1.1)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    for design in [Design::Naive, Design::DedupResume] {
        for o in runs.iter().filter(|o| o.design == design) {
            let c = colour(design);
            chart.draw_series(
                o.per_site
                    .iter()
                    .map(|(l, s)| Circle::new((mb(*l), mb(*s)), 2, c.mix(0.5).filled())),
            )?;
        }
    }
    Ok(())
}
