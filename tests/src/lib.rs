//! Shared helpers of strata's end-to-end tests: finding and running real tools.
