//! End-to-end test support (the QEMU rig and in-process frontend arrive with the vhost-user issue).
