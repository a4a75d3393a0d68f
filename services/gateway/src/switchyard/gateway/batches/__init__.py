"""OpenAI's Batch API (`/v1/batches`), run through Switchyard's own pipeline: each line of the input file
is a task submitted as `POST /v1/tasks` submits one (low priority, admitted, billed and recorded like any
other), by the one gateway replica that holds the batch's lease; the results become the output and error
files (`files/`)."""
