//! Credential changes (`setuid` and the like): the credentials before the call, kept by
//! `enter`, and after it.

use kestrel_ebpf_abi::{CredentialSet, ProbeConfig, SyscallRecord};

use crate::kernel::{credentials, Ptr};

/// Credential changes: the old credentials `enter` kept and the task's credentials now (a
/// record that cannot read the new ones is lost, and counted).
#[inline(always)]
pub fn fill(
    config: &ProbeConfig,
    task: Ptr,
    old_credentials: &CredentialSet,
    record: &mut SyscallRecord,
) -> Result<bool, i64> {
    let new = credentials(config, task)?;
    let cred = record.aux.cred_mut();
    cred.old = *old_credentials;
    cred.new = new;
    Ok(true)
}
