//! Client configuration the way kube-proxy finds it: a kubeconfig file, a `--master`
//! override, or the in-cluster service account.

use crate::source::SourceError;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::Path;

/// Builds the API client: from the kubeconfig file if given (its server replaced by
/// `master` if that is given too), else from `master` alone, else in-cluster.
pub(crate) async fn connect(
    kubeconfig: Option<&Path>,
    master: Option<&str>,
) -> Result<Client, SourceError> {
    let mut config = match (kubeconfig, master) {
        (Some(path), _) => from_kubeconfig(path).await?,
        (None, Some(master)) => Config::new(master_url(master)?),
        (None, None) => Config::incluster().map_err(SourceError::InCluster)?,
    };
    if let (Some(_), Some(master)) = (kubeconfig, master) {
        config.cluster_url = master_url(master)?;
    }
    Client::try_from(config).map_err(SourceError::Client)
}

async fn from_kubeconfig(path: &Path) -> Result<Config, SourceError> {
    let kubeconfig_error = |source| SourceError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)
}

/// Reads `--master`: a URL, or `host:port` (taken as https, as client-go does).
fn master_url(master: &str) -> Result<http::Uri, SourceError> {
    let text = if master.contains("://") {
        master.to_string()
    } else {
        format!("https://{master}")
    };
    text.parse()
        .map_err(|e: http::uri::InvalidUri| SourceError::Master {
            master: master.to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_without_a_scheme_is_https() {
        assert_eq!(
            master_url("10.0.0.1:6443").expect("valid").to_string(),
            "https://10.0.0.1:6443/"
        );
        assert_eq!(
            master_url("http://127.0.0.1:8080")
                .expect("valid")
                .to_string(),
            "http://127.0.0.1:8080/"
        );
        assert!(matches!(
            master_url("http://bad host"),
            Err(SourceError::Master { .. })
        ));
    }
}
