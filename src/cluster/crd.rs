//! The LatticeAgent CRD at start-up: checked by `run` (which waits for it), installed by `dev`
//! and the tests (in a cluster: `kubectl apply -f crds/`).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};

use super::REPORTER;
use crate::error::{Error, Result};

/// The name of the CustomResourceDefinition.
pub const CRD_NAME: &str = "latticeagents.agentlattice.io";

/// Checks that the LatticeAgent CRD is installed and serves `v1alpha1`.
pub async fn check_crd(client: &kube::Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await? {
        None => Err(Error::CrdNotInstalled(CRD_NAME.to_owned())),
        Some(crd)
            if crd
                .spec
                .versions
                .iter()
                .any(|v| v.name == "v1alpha1" && v.served) =>
        {
            Ok(())
        }
        Some(_) => Err(Error::CrdNotInstalled(format!(
            "{CRD_NAME} (version v1alpha1 is not served)"
        ))),
    }
}

/// Installs (or updates) every CRD of the operator and waits until they are established.
pub async fn install_crd(client: &kube::Client, timeout: Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(REPORTER).force();
    for (_, crd) in crate::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &params, &Patch::Apply(&crd)).await?;
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::Internal(format!("waiting for the CRD: {e}"))),
            Err(_) => {
                return Err(Error::Internal(format!(
                    "the CRD {name} was not established within {timeout:?}"
                )));
            }
        }
    }
    Ok(())
}
