"""The dataset names fqvae knows, and where each dataset's official file is downloaded from. One dict
feeds CLI choices, config validation, error messages and `fqvae data download`.

Every download fact (URL, size, hash) names where it comes from in `provenance`; a fact that could not
be checked against a public source says so there, and docs/datasets.md repeats the table."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fqvae_cli.errors import ConfigError
from fqvae_cli.files import fmt_bytes


@dataclass(frozen=True)
class Mirror:
    """Another place that serves the same file (the same digest is enforced whichever answers)."""

    url: str
    provenance: str  # who publishes or names this copy


@dataclass(frozen=True)
class DownloadSource:
    """Where `fqvae data download` fetches a dataset's official file, and how the file is checked."""

    url: str  # http(s), or a Google Drive link (fetched through the optional gdown package)
    file: str  # the name it is saved under
    approx_bytes: int  # shown to users and used by the free-space check
    size: int | None = None  # exact byte count, refused when different; None where none is published
    hash: str | None = None  # hex digest of the whole file
    algorithm: str = "sha256"  # of `hash`: sha256 or md5
    hash_enforced: bool = True  # False: a different digest is reported, not refused
    provenance: str = ""  # where the URL, size and hash come from
    citation: str = ""
    licence: str = ""
    note: str = ""
    mirrors: tuple[Mirror, ...] = ()  # tried in order after `url`

    @property
    def drive_id(self) -> str | None:
        return drive_id(self.url)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every source of the file, the official host first."""
        return (self.url, *(m.url for m in self.mirrors))

    @property
    def pinned(self) -> bool:
        """A file with another digest is refused."""
        return self.hash is not None and self.hash_enforced

    def size_text(self) -> str:
        return fmt_bytes(self.size) if self.size else f"about {fmt_bytes(self.approx_bytes)}"


def drive_id(url: str) -> str | None:
    """The file id of a Google Drive link (`.../file/d/ID/view`, `...?id=ID`), else None."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(url)
    if parsed.hostname not in ("drive.google.com", "docs.google.com", "drive.usercontent.google.com"):
        return None
    parts = parsed.path.split("/")
    if "d" in parts and parts.index("d") + 1 < len(parts):
        return parts[parts.index("d") + 1]
    ids = parse_qs(parsed.query).get("id")
    return ids[0] if ids else None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    source: str  # what `fqvae data prepare NAME --source` expects
    hyperparameters: str  # which column of Table A.3 applies ("shapes3d", "isaac3d", "mpi3d")
    image_size: int = 64
    built_in: bool = False  # rendered on demand, no source file needed
    converter: str | None = None  # the converter of its source format (fqvae_cli.data.store.CONVERTERS)
    download: DownloadSource | None = None  # the official file, for `fqvae data download`
    companions: tuple[DownloadSource, ...] = ()  # more files it needs, downloaded beside `download`

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def latent_dim(self) -> int:
        """d = 2 x number of factors (paper Section 3.3)."""
        return 2 * self.n_factors

    @property
    def prepared_bytes(self) -> int:
        """Disk taken by the prepared official grid: uint8 images and int64 codes."""
        n = math.prod(self.factor_sizes)
        return n * (self.image_size * self.image_size * 3 + 8 * self.n_factors)

    @property
    def download_files(self) -> tuple[DownloadSource, ...]:
        return ((self.download,) if self.download else ()) + self.companions

    def download_size_text(self) -> str:
        """The download's size, every file together ('about' where one is not exactly known)."""
        files = self.download_files
        total = sum(f.size or f.approx_bytes for f in files)
        exact = all(f.size for f in files)
        text = fmt_bytes(total) if exact else f"about {fmt_bytes(total)}"
        return text + (f" in {len(files)} files" if len(files) > 1 else "")

    def how_to_get(self) -> str:
        """The commands that make this dataset available, for every 'not prepared' message."""
        if self.built_in:
            return f"`fqvae data prepare {self.name}`"
        manual = f"`fqvae data prepare {self.name} --source PATH` with PATH the {self.source}"
        if self.download is None:
            return manual
        return f"`fqvae data download {self.name}` ({self.download_size_text()} download), or {manual}"


SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
MPI3D_FACTORS = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                 "horizontal_axis", "vertical_axis")
DSPRITES_FACTORS = ("shape", "scale", "orientation", "position_x", "position_y")
CARS3D_FACTORS = ("elevation", "azimuth", "object")
SMALLNORB_FACTORS = ("category", "instance", "elevation", "azimuth", "lighting")
FALCOR3D_FACTORS = ("lighting_intensity", "lighting_x", "lighting_y", "lighting_z", "camera_x", "camera_y",
                    "camera_z")
ISAAC3D_FACTORS = ("object_shape", "robot_x", "robot_y", "camera_height", "object_scale",
                   "lighting_intensity", "lighting_y_dir", "object_color", "wall_color")

_MPI3D_CITATION = ("Gondal et al., On the Transfer of Inductive Bias from Simulation to the Real World: a New "
                   "Disentanglement Dataset, NeurIPS 2019")
_MPI3D_README = "github.com/rr-learning/disentanglement_dataset README (Downloads section, 2025-04-17)"
_MPI3D_HUB = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
# 1,036,800 uint8 images of 64x64x3 in an uncompressed .npz; no size is published.
_MPI3D_FULL_BYTES = 1_036_800 * 64 * 64 * 3
_MPI3D_MD5 = {"toy": "55889cb7c7dfc655d6e0277beee88868", "realistic": "59a6225b88b635365f70c91b3e52f70f",
              "real": "0f33f609918fb5c97996692f91129802"}


def _mpi3d_source(variant: str) -> DownloadSource:
    real = variant == "real"
    return DownloadSource(
        url=f"{_MPI3D_HUB}mpi3d_{variant}.npz", file=f"mpi3d_{variant}.npz", approx_bytes=_MPI3D_FULL_BYTES,
        hash=_MPI3D_MD5[variant], algorithm="md5", hash_enforced=not real,
        provenance=(f"URL: {_MPI3D_README}; MD5: nmichlo/disent (disent/dataset/data/_groundtruth__mpi3d.py), "
                    "taken of the 2019 file at storage.googleapis.com/disentanglement_dataset/Final_Dataset/, "
                    "not re-checked against the hub copy; size: not published (1,036,800 x 64x64x3 bytes)"),
        citation=_MPI3D_CITATION, licence="CC BY 4.0",
        note=("the publisher replaced mpi3d_real.npz on 2025-04-17 ('Corrected corrupted mpi3d_real.npz', "
              "disentanglement_dataset issue 5), so the 2019 MD5 is reported, not enforced" if real else ""),
    )


def _nvlabs_source(name: str, drive_id: str, gigabytes: float, note: str = "") -> DownloadSource:
    """A 128x128 dataset of NVlabs/High-res-disentanglement-datasets (Isaac3D, Falcor3D): a Google Drive file
    with a published size and no published hash."""
    return DownloadSource(
        url=f"https://drive.google.com/uc?export=download&id={drive_id}",
        file=f"{name}_down128.zip", approx_bytes=int(gigabytes * 1e9),
        provenance=(f"Google Drive link and size ('{name}_128x128 ({gigabytes:g} GB)'): github.com/NVlabs/"
                    f"High-res-disentanglement-datasets README; {note}no hash is published: the sha256 of the "
                    "downloaded file is recorded"),
        citation="Nie et al., Semi-Supervised StyleGAN for Disentanglement Learning, ICML 2020",
        licence="CC BY 4.0 (NVIDIA)",
    )


SOURCES: dict[str, DownloadSource] = {
    "shapes3d": DownloadSource(
        url="https://storage.googleapis.com/3d-shapes/3dshapes.h5", file="3dshapes.h5",
        approx_bytes=267_573_662, size=267_573_662,
        hash="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
        provenance="URL, size and sha256: tensorflow/datasets tensorflow_datasets/datasets/shapes3d/checksums.tsv",
        citation="Burgess and Kim, 3D Shapes Dataset, 2018 (github.com/deepmind/3d-shapes)",
        licence="Apache 2.0 (as third-party mirrors state; the publisher's LICENSE text was not read)",
    ),
    "mpi3d": DownloadSource(
        url="https://drive.google.com/file/d/1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm/view?usp=sharing",
        file="real3d_complicated_shapes_ordered.npz", approx_bytes=460_800 * 64 * 64 * 3,
        provenance=(f"Google Drive link: {_MPI3D_README}; no size or hash is published: the sha256 of the "
                    "downloaded file is recorded; size: 460,800 x 64x64x3 bytes if stored uncompressed"),
        citation=_MPI3D_CITATION, licence="CC BY 4.0",
    ),
    **{f"mpi3d_{v}": _mpi3d_source(v) for v in ("toy", "realistic", "real")},
    "isaac3d": _nvlabs_source("Isaac3D", "1OmQ1G2wnm6eTsSFGTKFZZAh5D3nQTW1B", 13.0),
}

_DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
_DSPRITES = DownloadSource(
    url=f"https://github.com/deepmind/dsprites-dataset/blob/master/{_DSPRITES_FILE}?raw=true", file=_DSPRITES_FILE,
    approx_bytes=28_024_106, size=28_024_106,
    hash="729fa22e884c9c500e1f17415d580746b4c5894fbbb780a1319bbcfa39a745bb",
    provenance=("URL, size and sha256: tensorflow/datasets tensorflow_datasets/datasets/dsprites/checksums.tsv; "
                "mirror: the raw.githubusercontent.com address of the same file, which nmichlo/disent "
                "(disent/dataset/data/_groundtruth__dsprites.py) downloads (its md5 "
                "b331c4447a651c44bf5e8ae09022e230)"),
    citation=("Matthey et al., dSprites: Disentanglement testing Sprites dataset, 2017 "
              "(github.com/deepmind/dsprites-dataset)"),
    licence="Apache 2.0",
    mirrors=(Mirror(f"https://raw.githubusercontent.com/deepmind/dsprites-dataset/master/{_DSPRITES_FILE}",
                    "nmichlo/disent disent/dataset/data/_groundtruth__dsprites.py"),),
)
_DSPRITES_VARIANTS = {
    "color_dsprites": "Color-dSprites (disentanglement_lib): the sprite in a random colour",
    "noisy_dsprites": "Noisy-dSprites (disentanglement_lib): uniform noise background",
    "scream_dsprites": "Scream-dSprites (disentanglement_lib): a patch of The Scream as background",
}
SOURCES["cars3d"] = DownloadSource(
    url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz", file="nips2015-analogy-data.tar.gz",
    approx_bytes=2_000_000_000, hash="4e866a7919c1beedf53964e6f7a23686", algorithm="md5",
    provenance=("URL: disentanglement_lib bin/dlib_download_data and nmichlo/disent "
                "disent/dataset/data/_groundtruth__cars3d.py; md5: disent (its 'full' uri_hash); size: not "
                "published (the approximate size is an upper estimate, for the free-space check and the byte "
                "cap); mirror: the author's earlier address, in carpedm20/visual-analogy-tensorflow download.sh"),
    citation="Reed et al., Deep Visual Analogy-Making, NeurIPS 2015", licence="not stated by the publisher",
    mirrors=(Mirror("http://www-personal.umich.edu/~reedscot/files/nips2015-analogy-data.tar.gz",
                    "carpedm20/visual-analogy-tensorflow download.sh"),),
)
SOURCES["falcor3d"] = _nvlabs_source("Falcor3D", "1XAQfFK1x6cpN1eiovbP0hVfLTm5SsSoJ", 3.7,
                                      "the file QLAE's and Tripod's dataset builders fetch; ")
_NORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_PROVENANCE = ("URL, size and sha256: tensorflow/datasets tensorflow_datasets/datasets/smallnorb/checksums.tsv "
                    "(the same URLs as disentanglement_lib bin/dlib_download_data and nmichlo/disent "
                    "_groundtruth__norb.py)")
# (file stem, size, sha256) from TFDS's checksums.tsv
_NORB_FILES = {
    "training-dat": ("smallnorb-5x46789x9x18x6x2x96x96-training-dat", 131_896_188,
                     "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
    "training-cat": ("smallnorb-5x46789x9x18x6x2x96x96-training-cat", 348,
                     "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
    "training-info": ("smallnorb-5x46789x9x18x6x2x96x96-training-info", 71_052,
                      "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
    "testing-dat": ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat", 130_799_817,
                    "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
    "testing-cat": ("smallnorb-5x01235x9x18x6x2x96x96-testing-cat", 347,
                    "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
    "testing-info": ("smallnorb-5x01235x9x18x6x2x96x96-testing-info", 10_428,
                     "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
}


def _norb(key: str) -> DownloadSource:
    stem, size, digest = _NORB_FILES[key]
    return DownloadSource(url=f"{_NORB_URL}{stem}.mat.gz", file=f"{stem}.mat.gz", approx_bytes=size, size=size,
                          hash=digest, provenance=_NORB_PROVENANCE,
                          citation="LeCun, Huang and Bottou, Learning Methods for Generic Object Recognition with "
                                   "Invariance to Pose and Lighting, CVPR 2004",
                          licence="free for research use (as the NYU page states)")


SOURCES["scream"] = DownloadSource(
    url="https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg", file="scream.jpg",
    approx_bytes=60_000_000,
    provenance=("URL: disentanglement_lib bin/dlib_download_data; Wikimedia keeps no fixed version under this "
                "name and no hash is published, so the sha256 of the downloaded file is recorded in meta.json; "
                "size: not published (the approximate size is an upper estimate, for the byte cap)"),
    citation="Edvard Munch, The Scream, 1893", licence="public domain",
)

DATASETS: dict[str, DatasetSpec] = {
    "synth3d": DatasetSpec(
        name="synth3d", title="procedural Shapes3D-like scenes (built in, 32x32)",
        factor_names=SHAPES3D_FACTORS, factor_sizes=(10, 10, 10, 8, 4, 15),
        source="built in: rendered on first use", hyperparameters="shapes3d", image_size=32, built_in=True,
    ),
    "shapes3d": DatasetSpec(
        name="shapes3d", title="Shapes3D (3dshapes.h5)",
        factor_names=SHAPES3D_FACTORS, factor_sizes=(10, 10, 10, 8, 4, 15),
        source="3dshapes.h5 (keys images, labels)", hyperparameters="shapes3d", converter="shapes3d",
        download=SOURCES["shapes3d"],
    ),
    "isaac3d": DatasetSpec(
        name="isaac3d", title="Isaac3D (downsampled to 64x64)",
        factor_names=ISAAC3D_FACTORS, factor_sizes=(3, 8, 5, 4, 4, 4, 6, 4, 4),
        source="Isaac3D_down128 folder or zip (images/*.png, labels.npy)", hyperparameters="isaac3d",
        converter="isaac3d", download=SOURCES["isaac3d"],
    ),
    "mpi3d": DatasetSpec(
        name="mpi3d", title="MPI3D-complex",
        factor_names=MPI3D_FACTORS, factor_sizes=(4, 4, 2, 3, 3, 40, 40),
        source="real3d_complicated_shapes_ordered.npz or mpi3d_{toy,realistic,real}.npz (key images)",
        hyperparameters="mpi3d", converter="mpi3d", download=SOURCES["mpi3d"],
    ),
    # The 1,036,800-image files: same factors, six colours and six shapes. Not in the paper's tables.
    **{
        f"mpi3d_{v}": DatasetSpec(
            name=f"mpi3d_{v}", title=f"MPI3D-{v}",
            factor_names=MPI3D_FACTORS, factor_sizes=(6, 6, 2, 3, 3, 40, 40),
            source=f"mpi3d_{v}.npz (key images)", hyperparameters="mpi3d", converter="mpi3d",
            download=SOURCES[f"mpi3d_{v}"],
        )
        for v in ("toy", "realistic", "real")
    },
    # The field's other datasets (disentanglement_lib's study, QLAE, Tripod). Table A.3 has no column for
    # them: dSprites and Cars3D borrow the shapes3d column (rendered, few factors, clean backgrounds),
    # Falcor3D the isaac3d one (the same publisher's 128x128 renders, downsampled the same way).
    "dsprites": DatasetSpec(
        name="dsprites", title="dSprites (grayscale, stored in 3 equal channels)",
        factor_names=DSPRITES_FACTORS, factor_sizes=(3, 6, 40, 32, 32),
        source=f"{_DSPRITES_FILE} or the .npz (imgs, latents classes and values)", hyperparameters="shapes3d",
        converter="dsprites", download=_DSPRITES,
    ),
    **{
        name: DatasetSpec(
            name=name, title=title, factor_names=DSPRITES_FACTORS, factor_sizes=(3, 6, 40, 32, 32),
            source=f"{_DSPRITES_FILE} or the .npz" + (", with scream.jpg beside it"
                                                        if name == "scream_dsprites" else ""),
            hyperparameters="shapes3d", converter="dsprites", download=_DSPRITES,
            companions=(SOURCES["scream"],) if name == "scream_dsprites" else (),
        )
        for name, title in _DSPRITES_VARIANTS.items()
    },
    "cars3d": DatasetSpec(
        name="cars3d", title="Cars3D (128x128 renders, prepared at 64x64)",
        factor_names=CARS3D_FACTORS, factor_sizes=(4, 24, 183),
        source="nips2015-analogy-data.tar.gz, or its data/cars folder (list.txt, car_*_mesh.mat)",
        hyperparameters="shapes3d", converter="cars3d", download=SOURCES["cars3d"],
    ),
    # SmallNORB's photographs borrow the mpi3d column (the one real-world capture among the paper's).
    "smallnorb": DatasetSpec(
        name="smallnorb", title="SmallNORB, disentanglement_lib's: train + test files, instance a nuisance",
        factor_names=SMALLNORB_FACTORS, factor_sizes=(5, 10, 9, 18, 6),
        source="the six smallnorb-*-{training,testing}-{dat,cat,info}.mat(.gz) files, in one folder",
        hyperparameters="mpi3d", converter="smallnorb", download=_norb("training-dat"),
        companions=tuple(_norb(k) for k in ("training-cat", "training-info", "testing-dat", "testing-cat",
                                            "testing-info")),
    ),
    "smallnorb_disent": DatasetSpec(
        name="smallnorb_disent", title="SmallNORB, disent's: training file only, instance a factor",
        factor_names=SMALLNORB_FACTORS, factor_sizes=(5, 5, 9, 18, 6),
        source="the three smallnorb-*-training-{dat,cat,info}.mat(.gz) files, in one folder",
        hyperparameters="mpi3d", converter="smallnorb", download=_norb("training-dat"),
        companions=(_norb("training-cat"), _norb("training-info")),
    ),
    "falcor3d": DatasetSpec(
        name="falcor3d", title="Falcor3D (128x128, prepared at 64x64)",
        factor_names=FALCOR3D_FACTORS, factor_sizes=(5, 6, 6, 6, 6, 6, 6),
        source="Falcor3D_down128 folder or zip (images/*.png, train-rec.labels)", hyperparameters="isaac3d",
        converter="falcor3d", download=SOURCES["falcor3d"],
    ),
}

DEFAULT_DATASET = "synth3d"


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}.") from None
