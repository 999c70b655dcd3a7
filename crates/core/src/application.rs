//! Application names, as sites schedule them and the tower rolls them out.

/// Longest application name.
pub const APPLICATION_NAME_MAX: usize = 128;

/// Refuses a name that is not 1 to 128 of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// a digit; the error says so.
pub fn check_application_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= APPLICATION_NAME_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "application name {:?} is invalid: 1 to {APPLICATION_NAME_MAX} characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
            name.chars().take(150).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["pos", "a", "shop.pos_v2-x", &"a".repeat(128)] {
            assert!(check_application_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-pos", ".x", "a b", "a/b", &"a".repeat(129)] {
            assert!(check_application_name(bad).is_err(), "{bad}");
        }
    }
}
