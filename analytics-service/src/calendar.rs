//! Buckets of a report: hours or days as a time zone's clocks show them.
//! PostgreSQL's time zone database does the calendar arithmetic, so days
//! around a daylight-saving change are 23 or 25 hours long, as they are.

use service_runtime::field_error::invalid_argument;
use sqlx::PgPool;
use tonic::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(text: &str) -> Result<Self, Status> {
        match text {
            "hour" => Ok(Self::Hour),
            "" | "day" => Ok(Self::Day),
            _ => Err(invalid_argument("bucket", "must be \"hour\" or \"day\"")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The PostgreSQL interval of one bucket.
    pub fn step(self) -> &'static str {
        match self {
            Self::Hour => "1 hour",
            Self::Day => "1 day",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Calendar {
    pub time_zone: String,
    pub bucket: Bucket,
}

impl Calendar {
    /// The requested calendar; the zone must be an IANA name PostgreSQL
    /// knows (abbreviations such as "PST" are ambiguous and refused).
    pub async fn of(pool: &PgPool, time_zone: &str, bucket: &str) -> Result<Self, Status> {
        let bucket = Bucket::parse(bucket)?;
        let time_zone = if time_zone.is_empty() { "UTC" } else { time_zone };
        if time_zone.len() > 64 {
            return Err(invalid_argument("time_zone", "is not an IANA time zone name"));
        }
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
            .bind(time_zone)
            .fetch_one(pool)
            .await
            .map_err(service_runtime::database::internal_error)?;
        if !known {
            return Err(invalid_argument(
                "time_zone",
                "is not an IANA time zone name such as \"Europe/Paris\"",
            ));
        }
        Ok(Self {
            time_zone: time_zone.to_owned(),
            bucket,
        })
    }
}
