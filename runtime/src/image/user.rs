//! Resolution of a container user (`USER`, `UID`, `USER:GROUP`, `UID:GID`)
//! against the /etc/passwd and /etc/group of an image.

use std::path::Path;

use super::store::{ImageRecord, Store, StoreError};

/// A user or group that the image does not define.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?} not found in /etc/passwd of image {image:?}: use a numeric UID or add the user to the image")]
    UnknownUser { user: String, image: String },
    #[error("group {group:?} not found in /etc/group of image {image:?}: use a numeric GID or add the group to the image")]
    UnknownGroup { group: String, image: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Returns `(uid, gid)` for `user` as a container of `record` runs it.
///
/// A name is looked up in the image. A numeric UID without a group takes
/// the primary group of its passwd entry, or the same number when the
/// image has no entry for it.
pub fn resolve_user(
    store: &Store,
    record: &ImageRecord,
    user: &str,
) -> Result<(u32, u32), UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    let passwd = read_text(store, record, "etc/passwd")?;
    let entry = passwd
        .lines()
        .filter_map(parse_passwd_line)
        .find(|(name, uid, _)| match user_part.parse::<u32>() {
            Ok(number) => *uid == number,
            Err(_) => *name == user_part,
        });
    let (uid, primary_gid) = match (entry, user_part.parse::<u32>()) {
        (Some((_, uid, gid)), _) => (uid, gid),
        (None, Ok(uid)) => (uid, uid),
        (None, Err(_)) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_string(),
                image: record.name.clone(),
            })
        }
    };
    let gid = match group_part {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_text(store, record, "etc/group")?;
                groups
                    .lines()
                    .filter_map(parse_group_line)
                    .find(|(name, _)| *name == group)
                    .map(|(_, gid)| gid)
                    .ok_or_else(|| UserError::UnknownGroup {
                        group: group.to_string(),
                        image: record.name.clone(),
                    })?
            }
        },
    };
    Ok((uid, gid))
}

fn read_text(store: &Store, record: &ImageRecord, path: &str) -> Result<String, StoreError> {
    let body = store.read_image_file(record, Path::new(path))?;
    Ok(String::from_utf8_lossy(&body.unwrap_or_default()).into_owned())
}

/// Parses `name:password:uid:gid:gecos:home:shell`.
fn parse_passwd_line(line: &str) -> Option<(&str, u32, u32)> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((name, uid, gid))
}

/// Parses `name:password:gid:members`.
fn parse_group_line(line: &str) -> Option<(&str, u32)> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let gid = fields.next()?.parse().ok()?;
    Some((name, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_lines_parse() {
        assert_eq!(
            parse_passwd_line("www-data:x:33:34:www-data:/var/www:/usr/sbin/nologin"),
            Some(("www-data", 33, 34))
        );
        assert_eq!(parse_passwd_line("# comment"), None);
        assert_eq!(parse_passwd_line("broken:x:notanumber:1"), None);
        assert_eq!(
            parse_group_line("staff:x:50:alice,bob"),
            Some(("staff", 50))
        );
        assert_eq!(parse_group_line(""), None);
    }
}
