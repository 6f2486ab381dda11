//! Address registry and CPP/CPA collaboration profiles.
