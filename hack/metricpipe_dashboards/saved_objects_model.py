"""A typed model of the OpenSearch Dashboards / Kibana saved objects metricpipe ships.

Only the part of the saved-objects format these objects use: an index pattern, legacy
line/bar ("histogram") visualizations with their aggregations, and a dashboard placing them.
The format embeds JSON as strings (`visState`, `searchSourceJSON`, `panelsJSON`, ...): here
those are typed models that are parsed from, and dumped to, compact JSON strings, so a file
read back validates against the same types it was written from.

No library models these objects for Python (opensearch-py and elasticsearch-py speak the
search and saved-objects APIs, not the object format), hence this one.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _parse(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _dump(value: Any) -> str:
    if isinstance(value, list):
        return compact([_plain(item) for item in value])
    return compact(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# -- aggregations (visState.aggs) ---------------------------------------------------------------
class MetricParams(_Model):
    field: str | None = None


class MetricAgg(_Model):
    """A value per bucket: `count` of documents, or avg/sum/min/max of a numeric field."""

    id: str
    enabled: bool = True
    type: Literal["count", "avg", "sum", "min", "max"]
    schema_: Literal["metric"] = Field(default="metric", alias="schema")
    params: MetricParams = MetricParams()


class DateHistogramParams(_Model):
    field: str
    interval: str = "auto"  # Kibana picks the bucket width from the time range
    min_doc_count: int = 1
    extended_bounds: dict[str, Any] = Field(default_factory=dict)


class DateHistogramAgg(_Model):
    """The x axis: buckets of the time field."""

    id: str
    enabled: bool = True
    type: Literal["date_histogram"] = "date_histogram"
    schema_: Literal["segment"] = Field(default="segment", alias="schema")
    params: DateHistogramParams


class TermsParams(_Model):
    field: str
    size: int
    order: Literal["desc", "asc"] = "desc"
    orderBy: str  # noqa: N815 - the format's name: the id of the metric agg to order by
    row: bool | None = None  # split charts: one per row (True) or per column


class TermsAgg(_Model):
    """Buckets by the top `size` values of a field: series (`group`) or charts (`split`)."""

    id: str
    enabled: bool = True
    type: Literal["terms"] = "terms"
    schema_: Literal["group", "split"] = Field(alias="schema")
    params: TermsParams


Agg = Annotated[MetricAgg | DateHistogramAgg | TermsAgg, Field(discriminator="type")]
BucketAgg = DateHistogramAgg | TermsAgg


class VisState(_Model):
    title: str
    type: Literal["line", "histogram"]
    params: dict[str, Any]  # the chart's axes, series and legend (layout only)
    aggs: list[Agg]

    def metrics(self) -> list[MetricAgg]:
        return [agg for agg in self.aggs if isinstance(agg, MetricAgg)]

    def buckets(self) -> list[BucketAgg]:
        """The bucket aggregations, outermost first (the order Kibana nests them in)."""
        return [agg for agg in self.aggs if not isinstance(agg, MetricAgg)]


# -- search sources, references -----------------------------------------------------------------
class Query(_Model):
    query: str = ""  # KQL
    language: Literal["kuery"] = "kuery"


class SearchSource(_Model):
    query: Query = Query()
    filter: list[dict[str, Any]] = Field(default_factory=list)
    indexRefName: str | None = None  # noqa: N815 - the format's name


class Reference(_Model):
    name: str
    type: Literal["index-pattern", "visualization"]
    id: str


# a model the format embeds as a JSON string
_PARSE = BeforeValidator(_parse)
_DUMP = PlainSerializer(_dump, return_type=str)


class SavedSearchMeta(_Model):
    searchSourceJSON: Annotated[SearchSource, _PARSE, _DUMP]  # noqa: N815


# -- the objects --------------------------------------------------------------------------------
class IndexPatternAttributes(_Model):
    title: str
    timeFieldName: str  # noqa: N815
    fields: str = "[]"  # the field list is fetched from the indices when the pattern is used


class IndexPattern(_Model):
    type: Literal["index-pattern"] = "index-pattern"
    id: str
    attributes: IndexPatternAttributes
    references: list[Reference] = Field(default_factory=list)


class VisualizationAttributes(_Model):
    title: str
    description: str
    version: int = 1
    visState: Annotated[VisState, _PARSE, _DUMP]  # noqa: N815
    uiStateJSON: str = "{}"  # noqa: N815
    kibanaSavedObjectMeta: SavedSearchMeta  # noqa: N815


class Visualization(_Model):
    type: Literal["visualization"] = "visualization"
    id: str
    attributes: VisualizationAttributes
    references: list[Reference]

    @property
    def vis_state(self) -> VisState:
        return self.attributes.visState

    @property
    def search_source(self) -> SearchSource:
        return self.attributes.kibanaSavedObjectMeta.searchSourceJSON


class GridData(_Model):
    x: int
    y: int
    w: int
    h: int
    i: str


class DashboardPanel(_Model):
    version: str
    panelIndex: str  # noqa: N815
    gridData: GridData  # noqa: N815
    embeddableConfig: dict[str, Any] = Field(default_factory=dict)  # noqa: N815
    panelRefName: str  # noqa: N815


class DashboardOptions(_Model):
    useMargins: bool = True  # noqa: N815
    hidePanelTitles: bool = False  # noqa: N815


class DashboardAttributes(_Model):
    title: str
    description: str
    version: int = 1
    hits: int = 0
    timeRestore: bool = False  # noqa: N815
    optionsJSON: Annotated[DashboardOptions, _PARSE, _DUMP]  # noqa: N815
    panelsJSON: Annotated[list[DashboardPanel], _PARSE, _DUMP]  # noqa: N815
    kibanaSavedObjectMeta: SavedSearchMeta  # noqa: N815


class SavedDashboard(_Model):
    type: Literal["dashboard"] = "dashboard"
    id: str
    migrationVersion: dict[str, str]  # noqa: N815
    attributes: DashboardAttributes
    references: list[Reference]


SavedObject = Annotated[IndexPattern | Visualization | SavedDashboard, Field(discriminator="type")]


class SavedObjects(_Model):
    """An import file's objects, referenced objects first."""

    objects: list[SavedObject]

    def render_ndjson(self) -> str:
        """One compact JSON object per line, as the saved-objects import API reads them."""
        return "".join(
            compact(obj.model_dump(mode="json", by_alias=True, exclude_none=True)) + "\n"
            for obj in self.objects
        )

    @classmethod
    def parse_ndjson(cls, text: str) -> SavedObjects:
        return cls.model_validate({"objects": [json.loads(line) for line in text.splitlines()]})

    def visualizations(self) -> list[Visualization]:
        return [obj for obj in self.objects if isinstance(obj, Visualization)]

    def index_patterns(self) -> list[IndexPattern]:
        return [obj for obj in self.objects if isinstance(obj, IndexPattern)]
