//! Volley operator library.
