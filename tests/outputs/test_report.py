"""The warnings a build prints at its end: missing firmware named with the module that
wants it, what the content policy changed, the static check's warnings."""

from __future__ import annotations

from rdforge.outputs.report import build_warnings
from rdforge.tree.kmods import Module


def test_missing_firmware_is_named_with_its_module_and_the_policy_changes_are_said() -> None:
    mods = [Module("xhci_pci_renesas", "kernel/x.ko", firmware=["renesas_usb_fw.mem"]),
            Module("iwlwifi", "kernel/i.ko", firmware=["a.ucode", "b.ucode", "c.ucode", "d.ucode",
                                                       "here.ucode"]),
            Module("e1000", "kernel/e.ko")]
    policy: dict[str, object] = {"special_files_dropped": ["hostile: /dev/mem"], "setuid_setgid_cleared": [],
              "ownership_mapped_to_root": ["x: /etc/a (1234:1234)"]}
    lines = build_warnings(mods, ["a.ucode", "b.ucode", "c.ucode", "d.ucode",
                                  "renesas_usb_fw.mem"], policy, ["library x (dlopen) missing"])
    assert lines == [
        "module iwlwifi wants firmware the image lacks: a.ucode, b.ucode, c.ucode and 1 more "
        "(no package of firmware_packages has it)",
        "module xhci_pci_renesas wants firmware the image lacks: renesas_usb_fw.mem "
        "(no package of firmware_packages has it)",
        "content policy: 1 device nodes, FIFOs or sockets dropped: hostile: /dev/mem",
        "content policy: 1 owners the image does not create, now root: x: /etc/a (1234:1234)",
        "library x (dlopen) missing"]
    assert build_warnings(mods[2:], [], {}, []) == []
