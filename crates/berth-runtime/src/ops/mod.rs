//! One module per runtime verb.
