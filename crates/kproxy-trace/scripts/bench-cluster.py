#!/usr/bin/env python3
"""Writes a JSON List of N Services x M endpoints (one in ten a NodePort, every other one
with ClientIP session affinity, as the criterion bench's synthetic ruleset) shaped like
crates/kproxy-scale/src/cluster.rs, for timing `kproxy trace` on a real rendered ruleset:

    bench-cluster.py 10000 10 > cluster.json
    kproxy rules -f cluster.json --cluster-cidr 10.64.0.0/10 > rules.txt
"""
import ipaddress
import json
import sys

TEAMS = ["payments", "checkout", "search", "catalog", "identity", "billing", "shipping", "media"]
COMPONENTS = ["api", "worker", "cache", "frontend", "db-proxy", "events"]
FIRST_CLUSTER_IP = int(ipaddress.IPv4Address("10.96.0.10"))
FIRST_POD_IP = int(ipaddress.IPv4Address("10.64.0.1"))


def service(index, endpoints):
    ns = f"{TEAMS[(index // 100) % len(TEAMS)]}-{index // 100 // len(TEAMS):03}"
    name = f"{COMPONENTS[index % len(COMPONENTS)]}-{index:05}"
    grpc = index % 3 == 0
    port_name, port, target = ("grpc", 9090, 9090) if grpc else ("http", 80, 8080)
    ip = str(ipaddress.IPv4Address(FIRST_CLUSTER_IP + index))
    svc_port = {"name": port_name, "port": port, "protocol": "TCP", "targetPort": target}
    if index % 10 == 0:
        svc_port["nodePort"] = 30000 + index // 10
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "NodePort" if index % 10 == 0 else "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ports": [svc_port],
        },
    }
    if index % 2 == 0:
        svc["spec"]["sessionAffinity"] = "ClientIP"
    first = FIRST_POD_IP + index * endpoints
    eps = []
    for raw in range(first, first + endpoints):
        eps.append({
            "addresses": [str(ipaddress.IPv4Address(raw))],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{raw % 100}",
        })
    eps_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{index:05x}",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": target, "protocol": "TCP"}],
        "endpoints": eps,
    }
    return [svc, eps_slice]


def main():
    services = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    endpoints = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-0", "labels": {"kubernetes.io/hostname": "node-0"}},
        "spec": {"podCIDR": "10.64.0.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.77.2"}]},
    }
    items = [node]
    for i in range(services):
        items.extend(service(i, endpoints))
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
