# One image for every DeployForge process; compose.yaml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY client client
COPY libs libs
COPY services services
COPY gateway gateway
COPY deployforge deployforge
RUN pip install --no-cache-dir -c constraints.txt ./client .
USER nobody
