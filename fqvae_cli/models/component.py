"""The base of every component's settings (bottlenecks, regularizers): a small pydantic model that
rejects unknown keys and names its kind, so a stored model configuration says which component it holds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# json_schema_extra of a component field that Table A.3 sets per dataset (a loss weight, QLAE's n_v):
# a model's Table A.3 settings are read from its components (ModelSpec.hyperparameters).
TABLE_A3 = {"table_a3": True}


class ComponentConfig(BaseModel):
    """Subclasses declare `kind: Literal[NAME] = NAME` and their own fields, each with a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def kind_name(cls) -> str:
        return cls.model_fields["kind"].default

    def settings(self) -> dict:
        """The fields as `--set model.<field>` names them (without the kind)."""
        return self.model_dump(mode="json", exclude={"kind"})
