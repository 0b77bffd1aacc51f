"""Scanner makes and models, as real exports spell them, with their private tag habits.

Manufacturer (0008,0070) strings differ between a vendor's product lines and
software generations ("GE MEDICAL SYSTEMS" vs "GE Healthcare", "TOSHIBA" vs
"CANON_MEC"), which is exactly what harmonisation later has to cope with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Device:
    """One scanner model as it appears in General Equipment (PS3.3 C.7.5.1)."""

    manufacturer: str
    model: str
    software: str
    family: str  # private-tag family: "GE", "SIEMENS", "PHILIPS", "CANON", "FUJI", "CARESTREAM", "AGFA", "KONICA"
    kernels: tuple[str, ...] = ()  # CT convolution kernels (0018,1210), soft tissue first then lung


CR_DEVICES: tuple[Device, ...] = (
    Device("FUJIFILM Corporation", "FCR CAPSULA XL II", "A07-10", "FUJI"),
    Device("FUJIFILM Corporation", "FCR PROFECT CS", "A06-02", "FUJI"),
    Device("Carestream Health", "CR 975", "5.7.412", "CARESTREAM"),
    Device("Carestream Health", "Point-of-Care CR 360", "5.3.110", "CARESTREAM"),
    Device("Agfa", "CR 85-X", "NX 3.0.8800", "AGFA"),
    Device("KONICA MINOLTA", "REGIUS Model 190", "1.40", "KONICA"),
)

DX_DEVICES: tuple[Device, ...] = (
    Device("GE Healthcare", "Optima XR220amx", "DM_Platform_Release_Version 1.3", "GE"),
    Device("GE Healthcare", "Definium 8000", "dm_Platform_release_4.3", "GE"),
    Device("GE MEDICAL SYSTEMS", "Discovery XR656", "DM_Platform_Release_Version 2.1", "GE"),
    Device("SIEMENS", "Ysio Max", "VF10G", "SIEMENS"),
    Device("Siemens Healthineers", "Mobilett Mira Max", "VF12C", "SIEMENS"),
    Device("Philips Medical Systems", "DigitalDiagnost", "4.3.5", "PHILIPS"),
    Device("Philips", "MobileDiagnost wDR", "2.2.1", "PHILIPS"),
    Device("Carestream Health", "DRX-Revolution", "5.7.412.7005", "CARESTREAM"),
    Device("Agfa", "DX-D 100", "NX 3.0.9000", "AGFA"),
    Device("FUJIFILM Corporation", "FDR Go PLUS", "V1.3", "FUJI"),
)

CT_DEVICES: tuple[Device, ...] = (
    Device("GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_22ax.8", "GE", ("STANDARD", "LUNG")),
    Device("GE MEDICAL SYSTEMS", "Optima CT660", "gmp_vct.47", "GE", ("STANDARD", "LUNG")),
    Device("GE MEDICAL SYSTEMS", "LightSpeed VCT", "07MW18.4", "GE", ("STANDARD", "BONEPLUS")),
    Device("SIEMENS", "SOMATOM Definition AS+", "syngo CT VA48A", "SIEMENS", ("B31f", "B70f")),
    Device("SIEMENS", "SOMATOM Force", "syngo CT VB10A", "SIEMENS", ("Br40d", "Bl57d")),
    Device("Siemens Healthineers", "SOMATOM go.Up", "syngo CT VA30A", "SIEMENS", ("Br40", "Bl56")),
    Device("Philips", "iCT 256", "4.1.6", "PHILIPS", ("B", "YB")),
    Device("Philips", "Ingenuity CT", "4.1.3", "PHILIPS", ("B", "L")),
    Device("TOSHIBA", "Aquilion ONE", "V6.0", "CANON", ("FC08", "FC52")),
    Device("CANON_MEC", "Aquilion PRIME SP", "V8.8", "CANON", ("FC18", "FC56")),
)

US_DEVICES: tuple[Device, ...] = (
    Device("GE Healthcare", "LOGIQ E10", "R3.1.2", "GE"),
    Device("GE Healthcare", "Venue Go", "R2.2", "GE"),
    Device("Philips Medical Systems", "EPIQ 7G", "7.0.5.178", "PHILIPS"),
    Device("SIEMENS", "ACUSON Sequoia", "VA20A", "SIEMENS"),
    Device("CANON_MEC", "Aplio i800", "V6.0", "CANON"),
)

DEVICES: dict[str, tuple[Device, ...]] = {
    "CR": CR_DEVICES,
    "DX": DX_DEVICES,
    "CT": CT_DEVICES,
    "US": US_DEVICES,
}


def pick_device(modality: str, rng: np.random.Generator) -> Device:
    """One device of ``modality``, uniformly."""
    choices = DEVICES[modality]
    return choices[int(rng.integers(len(choices)))]


@dataclass(frozen=True)
class PrivateElement:
    """One private data element inside a block (PS3.5 §7.8.1): offset is the low byte of the element."""

    offset: int
    vr: str
    value: object
    identifying: bool = False  # carries a patient or site identifier


@dataclass(frozen=True)
class PrivateBlock:
    """A private creator and its elements, e.g. ``GEMS_IDEN_01`` in group 0009."""

    group: int
    creator: str
    elements: tuple[PrivateElement, ...]


def private_blocks(
    device: Device, *, patient_text: str, station: str, serial: str, operator: str
) -> tuple[PrivateBlock, ...]:
    """Vendor private blocks as the family's exports carry them, with identifiers inside.

    Real private tags leak identifiers: GE's identification group repeats the
    station and a RIS patient string, Siemens' CSA headers are binary blobs with
    ASCII protocol text, Philips and Fujifilm repeat operator and device ids.
    """
    family = device.family
    # Element offsets and VRs follow the vendors' published/known dictionaries (as
    # pydicom and dcmtk list them), so implicit-VR files still validate.
    if family == "GE":
        return (
            PrivateBlock(0x0009, "GEMS_IDEN_01", (
                PrivateElement(0x01, "LO", "GE_GENESIS_FF"),
                PrivateElement(0x02, "SH", station, True),
                PrivateElement(0x04, "SH", device.model[:16]),
                PrivateElement(0x17, "LT", patient_text, True),
            )),
            PrivateBlock(0x0043, "GEMS_PARM_01", (
                PrivateElement(0x27, "SH", "1.375:1"),
            )),
        )
    if family == "SIEMENS":
        ascii_part = (
            "### ASCCONV BEGIN ###\n"
            f'sPatient.tName\t = "{patient_text}"\n'
            f'sDevice.tSerialNumber\t = "{serial}"\n'
            f'sProtocol.tOperator\t = "{operator}"\n'
            "### ASCCONV END ###\n"
        ).encode("ascii")
        csa = b"SV10\x04\x03\x02\x01" + len(ascii_part).to_bytes(4, "little") + ascii_part
        if len(csa) % 2:
            csa += b"\x00"
        return (
            PrivateBlock(0x0029, "SIEMENS CSA HEADER", (
                PrivateElement(0x08, "CS", "IMAGE NUM 4"),
                PrivateElement(0x09, "LO", "20100114"),
                PrivateElement(0x10, "OB", csa, True),
            )),
        )
    if family == "PHILIPS":
        return (
            PrivateBlock(0x00E1, "ELSCINT1", (
                PrivateElement(0x42, "LO", patient_text, True),
                PrivateElement(0xA0, "LO", operator, True),
            )),
        )
    if family == "CANON":
        return (
            PrivateBlock(0x7005, "TOSHIBA_MEC_CT3", (
                PrivateElement(0x0B, "SH", "BODY"),
                PrivateElement(0x11, "LT", f"{patient_text} SN {serial}", True),
            )),
        )
    if family == "FUJI":
        return (
            PrivateBlock(0x0009, "FDMS 1.0", (
                PrivateElement(0x04, "SH", station, True),
                PrivateElement(0x05, "OW", b"\x00\x01" * 4),
                PrivateElement(0x90, "ST", patient_text, True),
            )),
        )
    if family == "CARESTREAM":
        return (
            PrivateBlock(0x0029, "CARESTREAM IMAGE INFORMATION", (
                PrivateElement(0x10, "LO", patient_text[:64], True),
                PrivateElement(0x11, "LO", serial, True),
            )),
        )
    if family == "AGFA":
        return (
            PrivateBlock(0x0019, "AGFA", (
                PrivateElement(0x10, "SH", station, True),
                PrivateElement(0x11, "LO", patient_text[:64], True),
            )),
        )
    return (
        PrivateBlock(0x0029, "KONICA MINOLTA HQ", (
            PrivateElement(0x15, "LO", serial, True),
        )),
    )
