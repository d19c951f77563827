//! kube-proxy's ipsets for IPVS mode: names, types and purposes.

use super::{Family, IpSet, SetType};

/// One of the ipsets kube-proxy's IPVS mode maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubeSet {
    /// `KUBE-LOOP-BACK`: local endpoints, for hairpin masquerade.
    LoopBack,
    /// `KUBE-CLUSTER-IP`: cluster IPs and ports.
    ClusterIp,
    /// `KUBE-EXTERNAL-IP`: external IPs and ports.
    ExternalIp,
    /// `KUBE-EXTERNAL-IP-LOCAL`: external IPs and ports with externalTrafficPolicy=Local.
    ExternalIpLocal,
    /// `KUBE-LOAD-BALANCER`: load-balancer IPs and ports.
    LoadBalancer,
    /// `KUBE-LOAD-BALANCER-LOCAL`: load-balancer IPs and ports with externalTrafficPolicy=Local.
    LoadBalancerLocal,
    /// `KUBE-LOAD-BALANCER-FW`: load balancers with source ranges.
    LoadBalancerFw,
    /// `KUBE-LOAD-BALANCER-SOURCE-CIDR`: load balancer and allowed source range.
    LoadBalancerSourceCidr,
    /// `KUBE-LOAD-BALANCER-SOURCE-IP`: load balancer and allowed source IP.
    LoadBalancerSourceIp,
    /// `KUBE-NODE-PORT-TCP`.
    NodePortTcp,
    /// `KUBE-NODE-PORT-LOCAL-TCP`.
    NodePortLocalTcp,
    /// `KUBE-NODE-PORT-UDP`.
    NodePortUdp,
    /// `KUBE-NODE-PORT-LOCAL-UDP`.
    NodePortLocalUdp,
    /// `KUBE-NODE-PORT-SCTP-HASH`: node IP and SCTP node port.
    NodePortSctp,
    /// `KUBE-NODE-PORT-LOCAL-SCTP-HASH`.
    NodePortLocalSctp,
    /// `KUBE-HEALTH-CHECK-NODE-PORT`.
    HealthCheckNodePort,
    /// `KUBE-IPVS-IPS`: addresses bound to kube-ipvs0.
    IpvsIps,
}

impl KubeSet {
    /// Every set, in kube-proxy's order.
    pub const ALL: [KubeSet; 17] = [
        KubeSet::LoopBack,
        KubeSet::ClusterIp,
        KubeSet::ExternalIp,
        KubeSet::ExternalIpLocal,
        KubeSet::LoadBalancer,
        KubeSet::LoadBalancerLocal,
        KubeSet::LoadBalancerFw,
        KubeSet::LoadBalancerSourceCidr,
        KubeSet::LoadBalancerSourceIp,
        KubeSet::NodePortTcp,
        KubeSet::NodePortLocalTcp,
        KubeSet::NodePortUdp,
        KubeSet::NodePortLocalUdp,
        KubeSet::NodePortSctp,
        KubeSet::NodePortLocalSctp,
        KubeSet::HealthCheckNodePort,
        KubeSet::IpvsIps,
    ];

    /// The IPv4 name, e.g. `KUBE-CLUSTER-IP`.
    pub fn base_name(self) -> &'static str {
        self.info().0
    }

    /// The name for `family`: IPv6 sets replace `KUBE-` with `KUBE-6-` and are
    /// cut to ipset's 31 characters.
    pub fn name(self, family: Family) -> String {
        let base = self.base_name();
        match family {
            Family::Inet => base.to_string(),
            Family::Inet6 => {
                let mut name = format!("KUBE-6-{}", &base["KUBE-".len()..]);
                name.truncate(31);
                name
            }
        }
    }

    /// The set type.
    pub fn set_type(self) -> SetType {
        self.info().1
    }

    /// What the set is for: the comment of the iptables rules that match it.
    pub fn comment(self) -> &'static str {
        self.info().2
    }

    /// An empty set of this kind for `family`.
    pub fn new_set(self, family: Family) -> IpSet {
        IpSet::new(self.name(family), self.set_type(), family)
    }

    fn info(self) -> (&'static str, SetType, &'static str) {
        use SetType::*;
        match self {
            KubeSet::LoopBack => ("KUBE-LOOP-BACK", HashIpPortIp, "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
            KubeSet::ClusterIp => ("KUBE-CLUSTER-IP", HashIpPort, "Kubernetes service cluster ip + port for masquerade purpose"),
            KubeSet::ExternalIp => ("KUBE-EXTERNAL-IP", HashIpPort, "Kubernetes service external ip + port for masquerade and filter purpose"),
            KubeSet::ExternalIpLocal => ("KUBE-EXTERNAL-IP-LOCAL", HashIpPort, "Kubernetes service external ip + port with externalTrafficPolicy=local"),
            KubeSet::LoadBalancer => ("KUBE-LOAD-BALANCER", HashIpPort, "Kubernetes service lb portal"),
            KubeSet::LoadBalancerLocal => ("KUBE-LOAD-BALANCER-LOCAL", HashIpPort, "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
            KubeSet::LoadBalancerFw => ("KUBE-LOAD-BALANCER-FW", HashIpPort, "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
            KubeSet::LoadBalancerSourceCidr => ("KUBE-LOAD-BALANCER-SOURCE-CIDR", HashIpPortNet, "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
            KubeSet::LoadBalancerSourceIp => ("KUBE-LOAD-BALANCER-SOURCE-IP", HashIpPortIp, "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
            KubeSet::NodePortTcp => ("KUBE-NODE-PORT-TCP", BitmapPort, "Kubernetes nodeport TCP port for masquerade purpose"),
            KubeSet::NodePortLocalTcp => ("KUBE-NODE-PORT-LOCAL-TCP", BitmapPort, "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
            KubeSet::NodePortUdp => ("KUBE-NODE-PORT-UDP", BitmapPort, "Kubernetes nodeport UDP port for masquerade purpose"),
            KubeSet::NodePortLocalUdp => ("KUBE-NODE-PORT-LOCAL-UDP", BitmapPort, "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
            KubeSet::NodePortSctp => ("KUBE-NODE-PORT-SCTP-HASH", HashIpPort, "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
            KubeSet::NodePortLocalSctp => ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", HashIpPort, "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
            KubeSet::HealthCheckNodePort => ("KUBE-HEALTH-CHECK-NODE-PORT", BitmapPort, "Kubernetes health check node port"),
            KubeSet::IpvsIps => ("KUBE-IPVS-IPS", HashIp, "Addresses on the ipvs interface"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_names_get_the_6_and_are_cut_to_31_characters() {
        assert_eq!(KubeSet::ClusterIp.name(Family::Inet6), "KUBE-6-CLUSTER-IP");
        assert_eq!(
            KubeSet::LoadBalancerSourceCidr.name(Family::Inet6),
            "KUBE-6-LOAD-BALANCER-SOURCE-CID"
        );
        assert_eq!(
            KubeSet::NodePortLocalSctp.name(Family::Inet6),
            "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
        );
        assert!(KubeSet::ALL
            .iter()
            .all(|s| s.name(Family::Inet).len() <= 31));
    }
}
