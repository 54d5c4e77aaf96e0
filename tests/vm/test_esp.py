"""The GPT disk for a boot with no root=: read back by util-linux's sfdisk, the reference
reader, with each partition holding its image's bytes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rdforge.formats.ddi import TYPES
from rdforge.vm.esp import ESP_TYPE, ROOT_PART_UUID, make_gpt_disk

pytestmark = pytest.mark.integration


def test_the_gpt_disk_holds_esp_and_a_discoverable_root(tmp_path: Path) -> None:
    esp, root = tmp_path / "esp.img", tmp_path / "root.img"
    esp.write_bytes(os.urandom(3 << 20))
    root.write_bytes(os.urandom((5 << 20) + 1000))  # not a whole number of sectors
    disk = make_gpt_disk(esp, root, tmp_path / "disk.img")
    r = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True)
    assert "warning" not in r.stderr.lower(), r.stderr
    table = json.loads(r.stdout)["partitiontable"]
    assert table["label"] == "gpt"
    esp_part, root_part = table["partitions"]
    assert esp_part["type"].lower() == str(ESP_TYPE)
    assert root_part["type"].lower() == TYPES["x86-64"][0]
    assert root_part["uuid"].lower() == str(ROOT_PART_UUID)
    v = subprocess.run(["sgdisk", "--verify", str(disk)], capture_output=True, text=True)
    assert "No problems found" in v.stdout, v.stdout + v.stderr  # both headers, CRCs, backup
    data = disk.read_bytes()
    for part, img in ((esp_part, esp), (root_part, root)):
        content = img.read_bytes()
        start = part["start"] * 512
        assert data[start:start + len(content)] == content
        assert part["size"] * 512 >= len(content)
