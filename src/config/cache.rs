//! `[cache]`: how many answers the cache holds, and the bounds it keeps their TTLs within.

use super::CacheSettings;
use super::defaults::{CACHE_MAX_TTL, CACHE_MIN_TTL, CACHE_SIZE};
use super::error::{ConfigError, Locator};
use super::raw::RawCache;
use super::values::optional_ttl;

/// `[cache]`.
pub(super) fn cache(raw: &RawCache, at: &Locator<'_>) -> Result<CacheSettings, ConfigError> {
    let min_ttl = optional_ttl(raw.min_ttl.as_ref(), CACHE_MIN_TTL, "cache.min_ttl", at)?;
    let max_ttl = optional_ttl(raw.max_ttl.as_ref(), CACHE_MAX_TTL, "cache.max_ttl", at)?;
    // The default min_ttl is zero, so when min > max the file sets min_ttl.
    if let Some(value) = raw.min_ttl.as_ref().filter(|_| min_ttl > max_ttl) {
        let message = format!(
            "{} is longer than cache.max_ttl ({})",
            humantime::format_duration(min_ttl),
            humantime::format_duration(max_ttl)
        );
        return Err(at.invalid(value.span(), "cache.min_ttl", message));
    }
    Ok(CacheSettings {
        size: raw.size.unwrap_or(CACHE_SIZE),
        min_ttl,
        max_ttl,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::assert_errors;

    #[test]
    fn bad_cache_ttls() {
        assert_errors(&[
            (
                "[cache]\nmin_ttl = \"2d\"\n",
                "2: cache.min_ttl",
                "2days is longer than cache.max_ttl (1day)",
            ),
            (
                "[cache]\nmax_ttl = \"100y\"\n",
                "2: cache.max_ttl",
                "`100y` is longer than a DNS TTL can be (68 years)",
            ),
        ]);
    }
}
