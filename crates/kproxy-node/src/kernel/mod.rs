//! The agent's kernel seam: the one place tools are run ([`exec`]), one trait per
//! iptables tool with the real implementation ([`iptables`]), `nft` ([`nft`]), backend choice
//! ([`backend`]), kernel parameters ([`sysctl`]), iptables-legacy table stamps ([`xt_stamp`])
//! over the x_tables socket calls ([`xt_socket`]), and a fake for tests ([`fake`]).

pub mod addresses;
pub mod backend;
pub mod exec;
pub mod fake;
pub mod iptables;
pub mod nft;
pub mod sysctl;
pub mod xt_socket;
pub mod xt_stamp;

pub use exec::KernelError;
pub use iptables::{
    Backend, ExecIptables, IptablesKernel, IptablesTools, RestoreTool, RuleTool, SaveTool,
    StampTool,
};
pub use xt_stamp::TableStamp;
