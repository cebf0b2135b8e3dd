"""Exceptions that mean bad input from the user: shown as one line, not a traceback."""

from mapper.al.campaign import CampaignError
from mapper.al.pool import SelectionError
from mapper.allocate.grid import GridError
from mapper.allocate.runlayers import RunInputError
from mapper.allocate.statistics import StatisticsError as CropStatisticsError
from mapper.config.models import ConfigError
from mapper.croptype.composite import CompositeError
from mapper.croptype.dataset import DatasetError
from mapper.croptype.s2names import S2ReadError
from mapper.croptype.taxonomy import TaxonomyError
from mapper.decide.models import DecisionTableError
from mapper.decide.table import TableError
from mapper.features.terrain import DemError
from mapper.grid.admin import UnknownProvinceError
from mapper.imagery.mbtiles import CacheCorruptError
from mapper.labels.store import LabelError
from mapper.maps.statistics import StatisticsError
from mapper.models.checkpoint import CheckpointError
from mapper.run.executor import ExecutorError
from mapper.run.plan import RegionError
from mapper.run.session import RunDiskFullError
from mapper.serve.runview import ServeError
from mapper.stac.runinfo import StacExportError
from mapper.store.run_lock import LockLostError, RunLockedError
from mapper.store.run_store import RunStoreError
from mapper.validation.validate import ValidationInputError

USER_ERRORS: tuple[type[Exception], ...] = (
    GridError,
    RunInputError,
    CropStatisticsError,
    CampaignError,
    SelectionError,
    ConfigError,
    CompositeError,
    DatasetError,
    S2ReadError,
    TaxonomyError,
    UnknownProvinceError,
    CacheCorruptError,
    LabelError,
    CheckpointError,
    DemError,
    TableError,
    DecisionTableError,
    RunStoreError,
    RunLockedError,
    RunDiskFullError,
    LockLostError,
    RegionError,
    StatisticsError,
    ExecutorError,
    ValidationInputError,
    StacExportError,
    ServeError,
    FileNotFoundError,
    PermissionError,
)
