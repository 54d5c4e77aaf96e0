"""Storage stacks in the initrd: LVM and md RAID come up the way trixie's full system brings
them up, from their own packages' udev rules (event-driven: a device is looked at when its
event says it is a PV or a RAID member, and nothing scans on a boot that has neither).

What the initrd changes around them, all declarative:
- lvm.conf: no monitoring (dmeventd is not in the image; the root system's lvm2-monitor
  takes over), no lvmpolld, no metadata backups into the initrd's RAM.
- mdadm.conf: every array found is assembled as local (the generic image cannot know the
  host name the array was made on; a foreign array would get no degraded start).
- A degraded array still starts: mdadm's own last-resort timer (30 s after the first member
  showed up) runs `mdadm --run`; a drop-in then says on the console which array runs
  degraded, and which members it has and lacks.
- The monitors of the running system (mdmonitor, lvm2-monitor, dm-event, lvmpolld) are
  masked: they belong to the root system, which starts its own."""

from __future__ import annotations

from rdforge.tree.fixups import UNITDIR
from rdforge.tree.model import FILE, Tree

LVM_CONF = """\
# rdforge: lvm2's compiled-in defaults apply, except where the initrd differs from the
# running system. Debian's lvm.conf sets nothing (it is all comments).
activation {
    # dmeventd is not in the initrd: the root system's lvm2-monitor.service monitors.
    monitoring = 0
}
global {
    use_lvmpolld = 0
}
backup {
    # Activation writes no metadata; a backup would only land in the initrd's RAM.
    backup = 0
    archive = 0
}
"""

MDADM_CONF = """\
# rdforge: a generic initrd cannot know the host name an array was created on, so every
# array is taken as local: assembled incrementally by mdadm's udev rules and, when a member
# stays missing, started degraded by mdadm-last-resort@.timer.
HOMEHOST <ignore>
"""

MD_REPORT = "usr/lib/rdforge/md-degraded-report"
# bash builtins and mdadm only (the image has no sed, awk or grep to rely on).
MD_REPORT_SCRIPT = """#!/bin/bash
# rdforge: report on the console an md array that mdadm-last-resort started degraded.
md=$1
sysfs=/sys/block/$md/md
[[ -r $sysfs/degraded ]] || exit 0
read -r degraded < "$sysfs/degraded"
[[ $degraded != 0 ]] || exit 0
read -r total < "$sysfs/raid_disks"
read -r level < "$sysfs/level"
declare -A info=()
while IFS='=' read -r k v; do info[$k]=$v; done < <(mdadm --detail --export "/dev/$md" 2>/dev/null)
present=() used=()
for d in "$sysfs"/dev-*; do
    [[ -e $d/slot ]] || continue
    read -r slot < "$d/slot"
    [[ $slot == none ]] && continue
    present+=("/dev/${d##*/dev-} (slot $slot)")
    used[$slot]=1
done
missing=()
for ((i = 0; i < total; i++)); do [[ -n ${used[$i]:-} ]] || missing+=("slot $i"); done
msg="rdforge: md RAID $md (${level}, name ${info[MD_NAME]:-?}, uuid ${info[MD_UUID]:-?})"
msg+=" started DEGRADED after waiting for its members: $((total - degraded)) of $total"
msg+=" devices; present: ${present[*]:-none}; missing: ${missing[*]:-none}"
echo "<2>$msg" > /dev/kmsg
"""
MD_REPORT_DROPIN = f"""\
[Service]
# rdforge: say which array runs degraded and what it lacks (on the console and in the log).
ExecStartPost=-/{MD_REPORT} %i
"""

# systemd-cryptsetup reads cryptsetup.passphrase (and the .tpm2-pin, .fido2-pin, .pkcs11-pin
# and .luks2-pin credentials) from its credentials directory, but the units its generator
# writes import none: the drop-in for all of them imports the system credentials handed to the
# initrd (by systemd-stub, SMBIOS or the kernel command line), after the TPM is up when one
# is sealed to it. Without such a credential the prompt comes as before.
CRYPTSETUP_DROPIN = """\
[Unit]
After=tpm2.target rdforge-cryptsetup-credentials.service
Wants=rdforge-cryptsetup-credentials.service

[Service]
# rdforge: machine-local secrets for a vendor-built image (systemd-cryptsetup@.service(8))
ImportCredential=cryptsetup.*
"""

# PID1 fails a unit whose imported credential it cannot decrypt. A cryptsetup credential
# sealed to another TPM (a replaced board, a cleared TPM) or to PCR values that no longer
# hold would then fail every volume's unit, and the machine would not boot although its owner
# knows the passphrase. So before the volumes, each encrypted cryptsetup.* credential is tried
# on this machine; one that cannot be decrypted is dropped and named on the console, and
# systemd-cryptsetup asks for the passphrase instead.
CREDS_SCREEN = "usr/lib/rdforge/cryptsetup-credentials"
# bash builtins and systemd's tools only (the image has no coreutils to rely on).
CREDS_SCREEN_SCRIPT = """#!/bin/bash
# rdforge: drop cryptsetup.* credentials that this machine cannot decrypt (see the unit).
dir=/run/credentials/@encrypted
shopt -s nullglob
bad=()
for f in "$dir"/cryptsetup.*; do
    name=${f##*/}
    if ! err=$(systemd-creds decrypt --name="$name" "$f" /dev/null 2>&1); then
        bad+=("$f")
        echo "<3>rdforge: credential $name cannot be decrypted on this machine (${err##*: });" \
             "dropped, the passphrase is asked for instead" > /dev/kmsg
    fi
done
((${#bad[@]})) || exit 0
# PID1 keeps them on a read-only tmpfs: writable for the removal, then read-only again (the
# mount, not the file system: that stays busy).
mount -o remount,rw "$dir" || exit 1
for f in "${bad[@]}"; do printf 'r %s\n' "$f"; done | systemd-tmpfiles --remove -
mount -o remount,bind,ro "$dir"
"""
CREDS_SCREEN_UNIT = f"""\
[Unit]
Description=Drop cryptsetup credentials this machine cannot decrypt
DefaultDependencies=no
After=tpm2.target
Before=cryptsetup-pre.target
ConditionDirectoryNotEmpty=/run/credentials/@encrypted

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/{CREDS_SCREEN}
"""

# Before the emergency shell: which awaited device never appeared, what waited for it, and
# what the storage tools saw of the stack it belongs to, rather than only a unit timeout.
EXPLAIN = "usr/lib/rdforge/explain-missing-devices"
EXPLAIN_SCRIPT = r"""#!/bin/bash
# rdforge: name the devices the boot waited for in vain (see rdforge-explain-missing.service).
say() { echo "<2>rdforge: $*" > /dev/kmsg; }
read -r cmdline < /proc/cmdline
luks=" "
for w in $cmdline; do
    case $w in rd.luks.uuid=*) luks+="${w#*=} ";; rd.luks.name=*) v=${w#*=}; luks+="${v%%=*} ";; esac
done
while read -r unit _; do
    [[ $unit == dev-*.device ]] || continue
    path=$(systemd-escape --unescape --path "${unit%.device}")
    # Only what a unit needed (a wanted device, such as the TPM's, is no reason to stop).
    waiters=$(systemctl show --value -p RequiredBy -p BoundBy "$unit")
    waiters=${waiters//\"/}
    waiters=${waiters//'\\'/'\'}  # systemctl show doubles the backslashes
    read -r -a w <<< "${waiters//$'\n'/ }"
    ((${#w[@]})) || continue
    say "device $path never appeared (waited for by: ${w[*]})"
    case $path in
    /dev/disk/by-uuid/*)
        u=${path##*/}
        u=${u,,}
        if [[ $luks == *" luks-$u "* || $luks == *" $u "* ]]; then
            why="its disk is not attached, or holds no LUKS header with that UUID"
            say "  $path is the LUKS volume of rd.luks.uuid/rd.luks.name=$u: $why"
        fi;;
    /dev/mapper/*-*|/dev/*/*)
        if [[ $path == /dev/mapper/* ]]; then  # VG-LV, each with its dashes doubled
            n=${path#/dev/mapper/}; n=${n//--/$'\x01'}; vg=${n%%-*}; vg=${vg//$'\x01'/-}
        else
            n=${path#/dev/}; vg=${n%%/*}
        fi
        if command -v lvm >/dev/null; then
            info=$(lvm vgs --noheadings -o vg_name,pv_count,vg_missing_pv_count "$vg" 2>/dev/null)
            read -r name pvs missing <<< "$info"
            if [[ -z $name ]]; then
                seen=$(lvm pvs --noheadings -o pv_name,vg_name --separator ' in ' 2>/dev/null)
                read -r -d '' -a seen <<< "$seen"
                seen="${seen[*]}"
                say "  LVM: no physical volume of volume group $vg was seen (physical volumes seen: ${seen:-none})"
            elif [[ ${missing:-0} != 0 ]]; then
                say "  LVM: volume group $vg lacks $missing of its $pvs physical volumes"
            else
                say "  LVM: volume group $vg is complete; its logical volume was not activated"
            fi
        fi;;
    esac
done < <(systemctl list-units --all --type=device --state=inactive --no-legend --plain)
if [[ -r /proc/mdstat ]]; then
    while read -r md _ state rest; do
        [[ $md == md* && $state == inactive ]] || continue
        member=${rest%%\[*}  # "vda[0](S) vdb[1](S)": the first member's superblock tells
        declare -A mdi=()
        while IFS='=' read -r k v; do mdi[$k]=$v; done < <(mdadm --examine --export "/dev/$member" 2>/dev/null)
        what=${mdi[MD_LEVEL]:+ (${mdi[MD_LEVEL]} of ${mdi[MD_DEVICES]:-?} devices)}
        say "md RAID $md is inactive$what: too few of its members appeared to start it; present: $rest"
    done < /proc/mdstat
fi
exit 0
"""
EXPLAIN_UNIT = f"""\
[Unit]
Description=Name the storage devices that never appeared
DefaultDependencies=no
Before=emergency.service

[Service]
Type=oneshot
ExecStart=/{EXPLAIN}
"""

MASKED = ("mdmonitor.service", "mdmonitor-oneshot.service", "mdmonitor-oneshot.timer",
          "mdcheck_start.timer", "mdcheck_continue.timer", "lvm2-monitor.service",
          "lvm2-lvmpolld.socket", "lvm2-lvmpolld.service", "dm-event.socket", "dm-event.service")


def storage_stacks(tree: Tree) -> list[str]:
    """Configure LVM and md RAID where their packages are in the tree; returns what was done,
    for the manifest."""
    done: list[str] = []
    if tree.get("usr/sbin/lvm") is not None:
        tree.remove("etc/lvm/lvm.conf")
        tree.add_file("etc/lvm/lvm.conf", LVM_CONF.encode())
        done.append("lvm2: event-driven activation by 69-lvm.rules (lvm.conf: no monitoring)")
        if tree.get("usr/bin/systemd-run") is None:
            done.append("lvm2: systemd-run is missing, 69-lvm.rules cannot activate volume groups")
        if tree.get("usr/sbin/thin_check") is None:
            done.append("lvm2: thin and cache pools are activated unchecked (thin_check and "
                        "cache_check, in thin-provisioning-tools, are not in the image)")
    if tree.get("usr/sbin/mdadm") is not None:
        if tree.get("etc/mdadm/mdadm.conf") is None:
            tree.add_file("etc/mdadm/mdadm.conf", MDADM_CONF.encode())
        tree.add_file(MD_REPORT, MD_REPORT_SCRIPT.encode(), 0o755)
        tree.add_file(f"{UNITDIR}/mdadm-last-resort@.service.d/10-rdforge.conf",
                      MD_REPORT_DROPIN.encode())
        done.append("mdadm: incremental assembly by 64-md-raid-assembly.rules, degraded start "
                    "after 30 s (mdadm-last-resort@.timer), reported on the console")
    if tree.get("usr/lib/systemd/system-generators/systemd-cryptsetup-generator") is not None:
        tree.add_file(f"{UNITDIR}/systemd-cryptsetup@.service.d/10-rdforge-credentials.conf",
                      CRYPTSETUP_DROPIN.encode())
        tree.add_file(CREDS_SCREEN, CREDS_SCREEN_SCRIPT.encode(), 0o755)
        tree.add_file(f"{UNITDIR}/rdforge-cryptsetup-credentials.service",
                      CREDS_SCREEN_UNIT.encode())
        done.append("systemd-cryptsetup@.service: imports cryptsetup.* credentials; ones this "
                    "machine cannot decrypt are dropped first (the passphrase prompt comes)")
    tree.add_file(EXPLAIN, EXPLAIN_SCRIPT.encode(), 0o755)
    tree.add_file(f"{UNITDIR}/rdforge-explain-missing.service", EXPLAIN_UNIT.encode())
    tree.add_symlink(f"{UNITDIR}/emergency.target.wants/rdforge-explain-missing.service",
                     "../rdforge-explain-missing.service")
    done.append("before an emergency shell: the devices that never appeared, what waited "
                "for them, and what lvm and mdadm saw")
    for unit in MASKED:
        e = tree.get(f"{UNITDIR}/{unit}")
        if e is not None and e.kind == FILE:
            tree.add_symlink(f"etc/systemd/system/{unit}", "/dev/null")
            done.append(f"{unit} (masked: the root system's)")
    return done
