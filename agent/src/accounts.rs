//! Accounts, read from /etc/passwd and /etc/group directly: the agent is linked statically, where
//! glibc's getpwnam would need to load NSS modules of the image.

/// A Linux account of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

pub fn lookup(name: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    find_in_passwd(&passwd, name)
}

/// The gid of group `tty`, which owns terminals (0 if there is none); read once.
pub fn tty_gid() -> u32 {
    static TTY_GID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TTY_GID.get_or_init(|| {
        std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|groups| find_gid(&groups, "tty"))
            .unwrap_or(0)
    })
}

fn find_in_passwd(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name || name.is_empty() {
            return None;
        }
        Some(Account {
            name: f[0].to_owned(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_owned(),
        })
    })
}

fn find_gid(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_found_by_exact_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      u1:x:200000:200000::/workspace/u1:/bin/bash\n\
                      u12:x:200001:200001::/workspace/u12:/bin/bash\n\
                      broken:x:notanumber:1::/:/bin/sh\n";
        let u1 = find_in_passwd(passwd, "u1").unwrap();
        assert_eq!(
            (u1.uid, u1.gid, u1.home.as_str()),
            (200000, 200000, "/workspace/u1")
        );
        assert_eq!(find_in_passwd(passwd, "u12").unwrap().uid, 200001);
        assert_eq!(find_in_passwd(passwd, "u"), None);
        assert_eq!(find_in_passwd(passwd, ""), None);
        assert_eq!(find_in_passwd(passwd, "broken"), None);
        assert_eq!(find_gid("tty:x:5:\nusers:x:100:\n", "tty"), Some(5));
        assert_eq!(find_gid("users:x:100:\n", "tty"), None);
    }
}
