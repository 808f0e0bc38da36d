package gpu

import (
	"slices"
	"strings"
	"testing"
)

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func gpuIDs(gpus []Device) []string {
	ids := []string{}
	for _, g := range gpus {
		ids = append(ids, g.ID)
	}
	return ids
}

func TestEnvVisible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		wantErr string // substring of the error; "" for none
	}{
		{"none set", nil, []string{}, ""},
		{"cuda indices", map[string]string{"CUDA_VISIBLE_DEVICES": "0,1"}, []string{"0", "1"}, ""},
		{"cuda single", map[string]string{"CUDA_VISIBLE_DEVICES": "3"}, []string{"3"}, ""},
		{"spaces trimmed", map[string]string{"CUDA_VISIBLE_DEVICES": " 2, 3 "}, []string{"2", "3"}, ""},
		{"cuda uuids", map[string]string{"CUDA_VISIBLE_DEVICES": "GPU-8f3b1c2d-0000-1111-2222-333344445555,GPU-aa"}, []string{"GPU-8f3b1c2d-0000-1111-2222-333344445555", "GPU-aa"}, ""},
		{"mig uuids", map[string]string{"CUDA_VISIBLE_DEVICES": "MIG-5c4b1f0e-1111-2222-3333-444455556666"}, []string{"MIG-5c4b1f0e-1111-2222-3333-444455556666"}, ""},
		{"old mig form", map[string]string{"CUDA_VISIBLE_DEVICES": "MIG-GPU-8f3b1c2d/1/0"}, []string{"MIG-GPU-8f3b1c2d/1/0"}, ""},
		{"cuda order kept", map[string]string{"CUDA_VISIBLE_DEVICES": "3,1,2"}, []string{"3", "1", "2"}, ""},
		{"cuda wins over slurm", map[string]string{"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "5"}, []string{"0"}, ""},
		{"slurm fallback", map[string]string{"SLURM_JOB_GPUS": "4,5"}, []string{"4", "5"}, ""},
		{"empty cuda falls back", map[string]string{"CUDA_VISIBLE_DEVICES": "  ", "SLURM_JOB_GPUS": "6"}, []string{"6"}, ""},
		{"gpu device ordinal fallback", map[string]string{"GPU_DEVICE_ORDINAL": "0,1"}, []string{"0", "1"}, ""},
		{"NoDevFiles", map[string]string{"CUDA_VISIBLE_DEVICES": "NoDevFiles", "SLURM_JOB_GPUS": "1"}, []string{}, ""},
		{"minus one", map[string]string{"CUDA_VISIBLE_DEVICES": "-1"}, []string{}, ""},
		{"empty entry", map[string]string{"CUDA_VISIBLE_DEVICES": "0,,1"}, nil, `CUDA_VISIBLE_DEVICES="0,,1" has an empty entry`},
		{"trailing comma", map[string]string{"SLURM_JOB_GPUS": "0,"}, nil, "SLURM_JOB_GPUS"},
		{"name is not an id", map[string]string{"CUDA_VISIBLE_DEVICES": "0,a100"}, nil, `"a100" is neither an index nor a GPU/MIG UUID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gpus, err := Env{Getenv: envFunc(tt.env)}.Visible()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Visible() = %v, %v; want an error containing %q", gpus, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Visible() error %v", err)
			}
			if got := gpuIDs(gpus); !slices.Equal(got, tt.want) {
				t.Errorf("Visible() = %q, want %q", got, tt.want)
			}
		})
	}
}
