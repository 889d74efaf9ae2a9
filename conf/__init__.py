"""Campaign configuration: the YAML files and their typed schema."""

from conf.loader import ConfigError, default_config_path, load_config, validate_config
from conf.schema import CampaignConfig

__all__ = ["CampaignConfig", "ConfigError", "default_config_path", "load_config", "validate_config"]
