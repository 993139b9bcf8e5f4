//! Volley end-to-end test helpers.
