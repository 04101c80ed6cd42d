module github.com/azureml-attach/azureml-attach/testenv/go/pause

go 1.26.0
