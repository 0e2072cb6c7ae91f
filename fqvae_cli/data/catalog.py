"""The dataset names fqvae knows. One dict feeds CLI choices, config validation and error messages."""

from __future__ import annotations

from dataclasses import dataclass

from fqvae_cli.errors import ConfigError


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

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def latent_dim(self) -> int:
        """d = 2 x number of factors (paper Section 3.3)."""
        return 2 * self.n_factors


SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
MPI3D_FACTORS = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                 "horizontal_axis", "vertical_axis")
ISAAC3D_FACTORS = ("object_shape", "robot_x", "robot_y", "camera_height", "object_scale",
                   "lighting_intensity", "lighting_y_dir", "object_color", "wall_color")

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
    ),
    "isaac3d": DatasetSpec(
        name="isaac3d", title="Isaac3D (downsampled to 64x64)",
        factor_names=ISAAC3D_FACTORS, factor_sizes=(3, 8, 5, 4, 4, 4, 6, 4, 4),
        source="Isaac3D_down128 folder or zip (images/*.png, labels.npy)", hyperparameters="isaac3d",
        converter="isaac3d",
    ),
    "mpi3d": DatasetSpec(
        name="mpi3d", title="MPI3D-complex",
        factor_names=MPI3D_FACTORS, factor_sizes=(4, 4, 2, 3, 3, 40, 40),
        source="real3d_complicated_shapes_ordered.npz or mpi3d_{toy,realistic,real}.npz (key images)",
        hyperparameters="mpi3d", converter="mpi3d",
    ),
    # The 1,036,800-image files: same factors, six colours and six shapes. Not in the paper's tables.
    **{
        f"mpi3d_{v}": DatasetSpec(
            name=f"mpi3d_{v}", title=f"MPI3D-{v}",
            factor_names=MPI3D_FACTORS, factor_sizes=(6, 6, 2, 3, 3, 40, 40),
            source=f"mpi3d_{v}.npz (key images)", hyperparameters="mpi3d", converter="mpi3d",
        )
        for v in ("toy", "realistic", "real")
    },
}

DEFAULT_DATASET = "synth3d"


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}.") from None
