# One image for every vmportal process: api, worker and beat differ only in their command.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY vmportal ./vmportal
COPY hypervisors ./hypervisors
COPY policies ./policies
RUN pip install . && useradd --system --home /app vmportal && mkdir -p /var/lib/vmportal \
    && chown vmportal /var/lib/vmportal
USER vmportal
ENV VMPORTAL_DATA_DIR=/var/lib/vmportal
EXPOSE 8000
CMD ["vmportal", "serve", "--host", "0.0.0.0", "--port", "8000"]
