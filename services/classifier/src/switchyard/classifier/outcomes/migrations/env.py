from alembic import context

from switchyard.common.db import run_env

run_env(context)
