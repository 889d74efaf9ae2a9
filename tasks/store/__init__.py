"""The campaign store: SQLAlchemy tables and the repository that writes them."""

from tasks.store.acquisition_repo import AcquisitionRepo
from tasks.store.dft_repo import DFT_STATES, DFT_TERMINAL, DFTRepo
from tasks.store.engine import get_engine, transaction
from tasks.store.lab_repo import LabRepo
from tasks.store.lease_repo import LeaseRepo
from tasks.store.micro_repo import MICRO_ROUND_STATES, MicroRepo, micro_round_reached
from tasks.store.repo import ROUND_STATES, CampaignRepo, round_reached
from tasks.store.results_repo import ResultsRepo
from tasks.store.secrets import adopt_credentials, public_url


class Store(CampaignRepo, ResultsRepo, DFTRepo, LabRepo, AcquisitionRepo, LeaseRepo, MicroRepo):
    """Access to one store (an SQLAlchemy URL). Holds no connection, so it pickles to task workers."""

    def __init__(self, url: str) -> None:
        self.url = adopt_credentials(url)  # its password (if any) lives in the environment, never in self.url

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


__all__ = ["DFT_STATES", "DFT_TERMINAL", "MICRO_ROUND_STATES", "ROUND_STATES", "Store", "adopt_credentials",
           "get_engine", "micro_round_reached", "public_url", "round_reached", "transaction"]
