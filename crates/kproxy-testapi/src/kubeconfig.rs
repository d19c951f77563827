//! A kubeconfig that points a client (kproxy's `--kubeconfig`, kubectl) at a server URL.

/// The name used for the cluster, user and context entries.
const ENTRY_NAME: &str = "kproxy-testapi";

/// A kubeconfig with one cluster at `server_url`, an anonymous user and a current context
/// joining them.
pub fn kubeconfig_yaml(server_url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {ENTRY_NAME}\n  \
           cluster:\n    \
             server: {server_url}\n\
         users:\n\
         - name: {ENTRY_NAME}\n  \
           user: {{}}\n\
         contexts:\n\
         - name: {ENTRY_NAME}\n  \
           context:\n    \
             cluster: {ENTRY_NAME}\n    \
             user: {ENTRY_NAME}\n\
         current-context: {ENTRY_NAME}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_and_a_current_context() {
        let text = kubeconfig_yaml("http://127.0.0.1:1234");
        let document: serde_json::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        assert_eq!(
            document["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(document["current-context"], ENTRY_NAME);
        assert_eq!(document["contexts"][0]["context"]["user"], ENTRY_NAME);
    }
}
