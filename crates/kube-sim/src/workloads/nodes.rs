//! Nodes: the default nodes of a simulated cluster, and what a node's kubelet reports about
//! itself (`Ready`, addresses, capacity, node info) once the Node object exists — also for
//! Nodes created through the API. No heartbeats, no leases, no NotReady transitions.

use serde_json::{Value, json};

use super::util::{condition, str_at};
use super::{Action, NODES, Plan};
use crate::meta;

/// A Node object as a joining kubelet registers it.
pub fn node_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        }},
        "spec": {"providerID": format!("kube-sim://{name}")},
    })
}

fn index(name: &str) -> u32 {
    super::util::fnv32a(name.as_bytes()) % 250
}

/// The node's status as its kubelet reports it, and its pod CIDR (node IPAM).
pub fn plan(node: &Value, now: &str) -> Plan {
    let mut plan = Plan::default();
    if meta::is_deleting(node) {
        return plan;
    }
    let name = meta::name(node).to_string();
    let uid = meta::uid(node).to_string();
    let i = index(&name);
    if str_at(node, "/spec/podCIDR").is_empty() {
        let cidr = format!("10.244.{i}.0/24");
        plan.actions.push(Action::Patch {
            res: NODES,
            namespace: String::new(),
            name: name.clone(),
            uid: uid.clone(),
            patch: json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}),
        });
    }
    let status = node.get("status").cloned().unwrap_or(json!({}));
    if condition(&status, "Ready").is_some() {
        return plan;
    }
    let cond = |t: &str, s: &str, reason: &str, message: &str| {
        json!({"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0"});
    let h = super::util::fnv32a(name.as_bytes());
    let status = json!({
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": format!("10.89.0.{}", i + 2)},
            {"type": "Hostname", "address": name},
        ],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": format!("{h:08x}-0000-4000-8000-000000000000"),
            "containerRuntimeVersion": "containerd://1.7.24",
            "kernelVersion": "6.1.0-kube-sim",
            "kubeProxyVersion": crate::VERSION_INFO.1,
            "kubeletVersion": crate::VERSION_INFO.1,
            "machineID": format!("{h:032x}"),
            "operatingSystem": "linux",
            "osImage": "kube-sim simulated node",
            "systemUUID": format!("{h:08x}-0000-4000-8000-000000000001"),
        },
    });
    plan.actions.push(Action::Status {
        res: NODES,
        namespace: String::new(),
        name,
        uid,
        status,
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_gets_a_cidr_and_a_ready_status_once() {
        let mut n = node_object("n1");
        n["metadata"]["uid"] = json!("u");
        let p = plan(&n, "t");
        assert_eq!(p.actions.len(), 2);
        let Action::Status { status, .. } = &p.actions[1] else {
            panic!()
        };
        assert_eq!(condition(status, "Ready").unwrap()["status"], "True");
        n["status"] = status.clone();
        n["spec"]["podCIDR"] = json!("10.244.1.0/24");
        assert!(plan(&n, "t").actions.is_empty());
    }
}
