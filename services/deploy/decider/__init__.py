"""The deploy context's rules as pure functions: decide returns events, evolve folds them.

No I/O, no clock, no ids generated here: handlers pass them in. One module per
aggregate; everything is re-exported here, so `decider.X` keeps working.
"""

from services.deploy.decider.deployments import *  # noqa: F403
from services.deploy.decider.dispatch import *  # noqa: F403
from services.deploy.decider.environments import *  # noqa: F403
from services.deploy.decider.pipelines import *  # noqa: F403
from services.deploy.decider.projects import *  # noqa: F403
from services.deploy.decider.services import *  # noqa: F403
