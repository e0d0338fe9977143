//! What one sample measured, and the line a sample process prints for its parent:
//! `RESULT value=1.5 p99=2.25 trials=1.5,3` (numbers only, no spaces inside a field).

use crate::rows::number;
use std::io::Write;

/// What one sample measured: the row's value, its extra metrics and, for rows whose
/// value is the worst of several trials, every trial's figure.
#[derive(Clone, Debug)]
pub struct Sample {
    pub value: f64,
    pub extras: Vec<(String, f64)>,
    pub trials: Vec<f64>,
}

impl Sample {
    pub fn new(value: f64) -> Sample {
        Sample {
            value,
            extras: Vec::new(),
            trials: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: f64) -> Sample {
        self.extras.push((key.to_string(), value));
        self
    }

    pub fn with_trials(mut self, trials: Vec<f64>) -> Sample {
        self.trials = trials;
        self
    }

    /// "trials 48 50 41": the trials as text ("" without any).
    pub fn trials_text(&self) -> String {
        let values = self.trial_values();
        if values.is_empty() {
            return values;
        }
        format!("trials {values}")
    }

    /// "48 50 41": the trials' values, space-separated ("" without any).
    pub fn trial_values(&self) -> String {
        let t: Vec<String> = self
            .trials
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    number(v)
                }
            })
            .collect();
        t.join(" ")
    }

    pub fn extra(&self, key: &str) -> Option<f64> {
        self.extras.iter().find(|e| e.0 == key).map(|e| e.1)
    }

    /// `value=1.5 p99=2.25 trials=1.5,3`: what a sample process prints after
    /// `RESULT `.
    pub fn to_line(&self) -> String {
        let mut line = format!("value={}", self.value);
        for (k, v) in &self.extras {
            line.push_str(&format!(" {k}={v}"));
        }
        if !self.trials.is_empty() {
            let t: Vec<String> = self.trials.iter().map(f64::to_string).collect();
            line.push_str(&format!(" trials={}", t.join(",")));
        }
        line
    }

    pub fn parse(line: &str) -> Result<Sample, String> {
        let mut sample = Sample::new(f64::NAN);
        for field in line.split_whitespace() {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("bad result field {field:?}"))?;
            let bad = || format!("bad number in {field:?}");
            if k == "trials" {
                for t in v.split(',') {
                    sample.trials.push(t.parse().map_err(|_| bad())?);
                }
                continue;
            }
            let v: f64 = v.parse().map_err(|_| bad())?;
            if k == "value" {
                sample.value = v;
            } else {
                sample.extras.push((k.to_string(), v));
            }
        }
        if sample.value.is_finite() {
            Ok(sample)
        } else {
            Err(format!("no value in the result line {line:?}"))
        }
    }
}

/// Ends a sample process: prints the result line (`RESULT ...`) and exits with 0,
/// or prints the error and exits with 1 (the parent shows its last line). Exits
/// without joining anything: idle tasks sleep for an hour.
pub fn exit_with(result: Result<Sample, String>) -> ! {
    match result {
        Ok(sample) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "RESULT {}", sample.to_line());
            let _ = out.flush();
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
