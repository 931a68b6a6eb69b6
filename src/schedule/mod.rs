//! When things fire: the Quartz cron dialect and its plain-English explanation.

pub mod cron;
